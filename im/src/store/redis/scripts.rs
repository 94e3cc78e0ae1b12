//! Lua scripts run inside Redis. Every script touches only keys of one queue
//! (they share the `{<appid>:<uid>}` hash tag), so each runs atomically on
//! one Redis Cluster node.

/// Places the entries of one request that belong to one queue.
///
/// * `KEYS[1]`: the queue (ZSET, score = id);
/// * `KEYS[2]`: the queue's meta hash (field `head` = newest id);
/// * `KEYS[3]`: the dedup record of this request in this queue, a string
///   `<first id>|<tag>|<mark 0/1>`;
/// * `ARGV[1]`: dedup record lifetime in ms;
/// * `ARGV[2]`: entries to keep (0 = no count limit);
/// * `ARGV[3]`: age cutoff in unix ms: entries older than this go (0 = none);
/// * `ARGV[4]`: most entries examined for the age cutoff per call;
/// * `ARGV[5]`: idle lifetime of the queue ZSET in ms (0 = none);
/// * `ARGV[6]`: mode: `c` (check: an existing record whose tag has the same
///   digest, the part before the first `|`, wins), `r` (replace: always
///   write) or `o` (own: an existing record with exactly this tag wins —
///   retries and fan-out redo of this very request);
/// * `ARGV[7]`: the tag, `<digest>|<incarnation>|<connection>` in hex;
/// * `ARGV[8..]`: the entries, without their 8-byte id prefix (timestamp i64
///   BE, cmd u8, flag u8, device i64 BE, body).
///
/// Returns `{1, first_id, tag, mark}` when a record wins (nothing is
/// written; the request's ids in this queue are `first_id, first_id + 1,
/// …`), else `{0, first_id, '', 0}` after writing. A record of another
/// format (ids only, from before tags) never wins. Ids come from `HINCRBY
/// head`, so they are contiguous per queue, and all writes happen in this
/// one script, so they land together or not at all. The first write command
/// is `HINCRBY`: if Redis refuses writes (OOM, read-only replica) nothing is
/// written.
///
/// Integers are formatted with `%d` because Redis converts Lua numbers to
/// strings with `%.14g`, which would turn large ids into floats.
pub(super) const APPEND: &str = r#"
local rec = redis.call('GET', KEYS[3])
local mode = ARGV[6]
if rec and mode ~= 'r' then
  local first, tag, mark = string.match(rec, '^(%d+)|(.*)|([01])$')
  if first then
    local wins
    if mode == 'c' then
      wins = string.match(tag, '^[^|]*') == string.match(ARGV[7], '^[^|]*')
    else
      wins = tag == ARGV[7]
    end
    if wins then
      return {1, tonumber(first), tag, tonumber(mark)}
    end
  elseif mode == 'o' and ARGV[7] == '' and string.match(rec, '^%d+$') then
    -- Redo of a fan-out logged before tags existed: its own old record.
    return {1, tonumber(rec), '', 0}
  end
end
local n = #ARGV - 7
local last = redis.call('HINCRBY', KEYS[2], 'head', n)
local first = last - n + 1
for i = 1, n do
  local id = first + i - 1
  redis.call('ZADD', KEYS[1], string.format('%d', id), struct.pack('>i8', id) .. ARGV[7 + i])
end
redis.call('SET', KEYS[3], string.format('%d', first) .. '|' .. ARGV[7] .. '|0', 'PX', ARGV[1])
local keep = tonumber(ARGV[2])
if keep > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -keep - 1)
end
local cutoff = tonumber(ARGV[3])
if cutoff > 0 then
  -- A member shorter than its header is unreadable garbage: treat it as old.
  local function old(m)
    return #m < 16 or struct.unpack('>i8', m, 9) < cutoff
  end
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)
  if oldest[1] and old(oldest[1]) then
    local batch = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[4]) - 1)
    local drop = 0
    for i = 1, #batch do
      if old(batch[i]) then drop = i else break end
    end
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, drop - 1)
  end
end
local idle = tonumber(ARGV[5])
if idle > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return {0, first, '', 0}
"#;

/// Stores `ARGV[2]` in field `ARGV[1]` of the hash `KEYS[1]` unless the
/// field already holds a number that is at least as large. Returns 1 when
/// the value was stored.
pub(super) const SET_IF_LARGER: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and tonumber(cur) and tonumber(ARGV[2]) <= tonumber(cur) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"#;

/// Sets the mark of the dedup record `KEYS[1]` (format as in [`APPEND`]),
/// keeping its expiry. Returns 1 when a record was marked.
pub(super) const MARK: &str = r#"
local rec = redis.call('GET', KEYS[1])
if not rec then
  return 0
end
local head = string.match(rec, '^(%d+|.*)|[01]$')
if not head then
  return 0
end
redis.call('SET', KEYS[1], head .. '|1', 'KEEPTTL')
return 1
"#;
