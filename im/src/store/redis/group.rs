//! [`GroupStore`] on Redis, beside the queues. Per group two keys with the
//! hash tag `{g<appid>:<gid>}` (one Cluster slot, so each Lua script below is
//! atomic): `<prefix>:{g7:3110}:info` HASH (`super` = 0|1, `ver` = version) and
//! `<prefix>:{g7:3110}:m` HASH uid → `"<joined>,<mute>"`. Allocated ids come
//! from `INCR <prefix>:groups:next_gid`, skipping ids already taken.

use super::{RedisStore, rerr};
use crate::store::group::{Group, GroupStore, Member, NewGroup, Standing, Update, new_version};
use crate::store::{StoreError, StoreFuture};
use ::redis::{AsyncCommands, Script};
use std::sync::Arc;

const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'super', ARGV[2], 'ver', ARGV[1])
for i = 4, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], ARGV[3]) end
return 1
"#;

const GET: &str = r#"
local s = redis.call('HGET', KEYS[1], 'super')
if not s then return false end
return {s, redis.call('HGET', KEYS[1], 'ver') or '0', redis.call('HGETALL', KEYS[2])}
"#;

const STANDING: &str = r#"
local s = redis.call('HGET', KEYS[1], 'super')
if not s then return false end
return {s, redis.call('HGET', KEYS[1], 'ver') or '0', redis.call('HGET', KEYS[2], ARGV[1]) or ''}
"#;

const DELETE: &str = r#"
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2])
return 1
"#;

const ADD: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'ver', ARGV[1])
for i = 3, #ARGV do redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[2]) end
return 1
"#;

const REMOVE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'ver', ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
"#;

const MUTE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local v = redis.call('HGET', KEYS[2], ARGV[2])
if not v then return 2 end
redis.call('HSET', KEYS[1], 'ver', ARGV[1])
local joined = string.match(v, '^(%-?%d+)') or '0'
redis.call('HSET', KEYS[2], ARGV[2], joined .. ',' .. ARGV[3])
return 1
"#;

const UPGRADE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'super', '1', 'ver', ARGV[1])
return 1
"#;

/// Most ids tried when allocating a gid (each taken id costs one try).
const ALLOC_TRIES: usize = 1000;

struct Scripts {
    create: Script,
    get: Script,
    standing: Script,
    delete: Script,
    add: Script,
    remove: Script,
    mute: Script,
    upgrade: Script,
}

/// The Redis group store; shares the message store's connection.
pub struct RedisGroupStore {
    store: Arc<RedisStore>,
    scripts: Scripts,
}

impl RedisGroupStore {
    pub fn new(store: Arc<RedisStore>) -> RedisGroupStore {
        RedisGroupStore {
            store,
            scripts: Scripts {
                create: Script::new(CREATE),
                get: Script::new(GET),
                standing: Script::new(STANDING),
                delete: Script::new(DELETE),
                add: Script::new(ADD),
                remove: Script::new(REMOVE),
                mute: Script::new(MUTE),
                upgrade: Script::new(UPGRADE),
            },
        }
    }

    fn keys(&self, appid: i64, gid: i64) -> (String, String) {
        let p = &self.store.opts.key_prefix;
        (
            format!("{p}:{{g{appid}:{gid}}}:info"),
            format!("{p}:{{g{appid}:{gid}}}:m"),
        )
    }

    /// Runs a script over the group's two keys with `args`.
    async fn eval<T: ::redis::FromRedisValue>(
        &self,
        script: &Script,
        appid: i64,
        gid: i64,
        args: Vec<String>,
    ) -> Result<T, StoreError> {
        let (info, members) = self.keys(appid, gid);
        let mut inv = script.prepare_invoke();
        inv.key(info).key(members);
        for a in args {
            inv.arg(a);
        }
        let mut c = self.store.conn.clone();
        self.store
            .call(async { inv.invoke_async(&mut c).await.map_err(rerr) })
            .await
    }

    async fn update(
        &self,
        script: &Script,
        appid: i64,
        gid: i64,
        args: Vec<String>,
    ) -> Result<Update, StoreError> {
        // ARGV[1] of every change script is the group's new version.
        let mut all = vec![new_version().to_string()];
        all.extend(args);
        let r: i64 = self.eval(script, appid, gid, all).await?;
        Ok(match r {
            0 => Update::NoGroup,
            2 => Update::NoMember,
            _ => Update::Done,
        })
    }

    async fn do_create(&self, g: NewGroup) -> Result<Option<i64>, StoreError> {
        let mut args = vec![
            new_version().to_string(),
            (g.is_super as u8).to_string(),
            format!("{},0", g.joined),
        ];
        args.extend(g.members.iter().map(|u| u.to_string()));
        if let Some(gid) = g.gid {
            let r: i64 = self.eval(&self.scripts.create, g.appid, gid, args).await?;
            return Ok((r == 1).then_some(gid));
        }
        let counter = format!("{}:groups:next_gid", self.store.opts.key_prefix);
        for _ in 0..ALLOC_TRIES {
            let mut c = self.store.conn.clone();
            let gid: i64 = self
                .store
                .call(async { c.incr(&counter, 1).await.map_err(rerr) })
                .await?;
            let r: i64 = self
                .eval(&self.scripts.create, g.appid, gid, args.clone())
                .await?;
            if r == 1 {
                return Ok(Some(gid));
            }
        }
        Err(StoreError::Backend("no free group id found".into()))
    }
}

fn parse_member(uid: i64, v: &str) -> Option<Member> {
    let (joined, mute) = v.split_once(',')?;
    Some(Member {
        uid,
        joined: joined.parse().ok()?,
        mute: mute == "1",
    })
}

impl GroupStore for RedisGroupStore {
    fn create(&self, g: NewGroup) -> StoreFuture<'_, Option<i64>> {
        Box::pin(self.do_create(g))
    }

    fn group(&self, appid: i64, gid: i64) -> StoreFuture<'_, Option<Group>> {
        Box::pin(async move {
            let r: Option<(String, i64, Vec<String>)> =
                self.eval(&self.scripts.get, appid, gid, vec![]).await?;
            let Some((s, version, flat)) = r else {
                return Ok(None);
            };
            let mut members: Vec<Member> = flat
                .chunks_exact(2)
                .filter_map(|kv| parse_member(kv[0].parse().ok()?, &kv[1]))
                .collect();
            members.sort_by_key(|m| m.uid);
            Ok(Some(Group {
                appid,
                gid,
                is_super: s == "1",
                members,
                version,
            }))
        })
    }

    fn standing(&self, appid: i64, gid: i64, uid: i64) -> StoreFuture<'_, Standing> {
        Box::pin(async move {
            let r: Option<(String, i64, String)> = self
                .eval(&self.scripts.standing, appid, gid, vec![uid.to_string()])
                .await?;
            Ok(match r {
                None => Standing::NoGroup,
                Some((s, version, v)) => {
                    let is_super = s == "1";
                    match parse_member(uid, &v) {
                        Some(member) => Standing::Member {
                            is_super,
                            member,
                            version,
                        },
                        None => Standing::NotMember { is_super, version },
                    }
                }
            })
        })
    }

    fn delete(&self, appid: i64, gid: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let r: i64 = self.eval(&self.scripts.delete, appid, gid, vec![]).await?;
            Ok(r == 1)
        })
    }

    fn add_members(
        &self,
        appid: i64,
        gid: i64,
        uids: Vec<i64>,
        joined: i64,
    ) -> StoreFuture<'_, Update> {
        Box::pin(async move {
            let mut args = vec![format!("{joined},0")];
            args.extend(uids.iter().map(|u| u.to_string()));
            self.update(&self.scripts.add, appid, gid, args).await
        })
    }

    fn remove_member(&self, appid: i64, gid: i64, uid: i64) -> StoreFuture<'_, Update> {
        Box::pin(self.update(&self.scripts.remove, appid, gid, vec![uid.to_string()]))
    }

    fn set_mute(&self, appid: i64, gid: i64, uid: i64, mute: bool) -> StoreFuture<'_, Update> {
        Box::pin(self.update(
            &self.scripts.mute,
            appid,
            gid,
            vec![uid.to_string(), (mute as u8).to_string()],
        ))
    }

    fn upgrade(&self, appid: i64, gid: i64) -> StoreFuture<'_, Update> {
        Box::pin(self.update(&self.scripts.upgrade, appid, gid, vec![]))
    }
}
