//! `ferry chat`: an interactive terminal client on the Rust client library.
//!
//! Lines typed on stdin:
//! * `@UID text` — peer message; prints `ack @UID #N` once stored (or the refusal);
//! * `/join ROOM`, `/leave` — enter / leave a chat room;
//! * `#text` — message to the room entered last;
//! * `/quit` (or end of input) — leave.
//!
//! Incoming messages print as `UID: text` the moment they arrive, whether
//! they came as a push or through a sync the push triggered; only what the
//! first sync after login delivers (what arrived while offline) prints as
//! `[history] UID: text`, followed by one `-- N message(s) while offline;
//! live from here --` line. Room messages print as `[room R] UID: text`.
//! The user's own messages sent from this terminal are not printed again
//! (the server stores them in the sender's queue too, so a later sync
//! returns them, flagged SELF); those sent from the user's other devices
//! print as `me -> UID: text`.

use anyhow::{Context, bail};
use ferry_common::client::{Client, ClientHandle, ClientOptions, Event};
use ferry_common::protocol::Message;
use ferry_common::protocol::flag::SELF;
use ferry_common::token::{Claims, sign};
use std::io::Write;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(clap::Args)]
pub struct ChatArgs {
    /// im client TCP address.
    #[arg(long, default_value = "127.0.0.1:23000")]
    server: String,
    /// Login token (e.g. from `ferry token`); or give --uid and --jwt-secret.
    #[arg(long, env = "FERRY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Mint a token for this uid, with --jwt-secret or else the secret
    /// `ferry im` keeps in --data-dir (as `ferry token` does).
    #[arg(long)]
    uid: Option<i64>,
    #[arg(long, default_value_t = 7)]
    appid: i64,
    #[arg(long, env = "FERRY_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// The server's data dir, where it keeps its generated JWT secret.
    #[arg(long, env = "FERRY_DATA_DIR", default_value = "./data")]
    data_dir: std::path::PathBuf,
    /// Device id sent at login.
    #[arg(long, default_value = "ferry-chat")]
    device: String,
}

pub async fn run(a: ChatArgs) -> anyhow::Result<()> {
    let token = match (a.token, a.uid) {
        (Some(t), _) => t,
        (None, Some(uid)) => {
            let key = ferry_im::auth::load_or_create_secret(a.jwt_secret.as_deref(), &a.data_dir)
                .with_context(|| {
                format!("loading the JWT secret from {}", a.data_dir.display())
            })?;
            sign(
                &Claims {
                    appid: a.appid,
                    uid,
                    exp: None,
                    nbf: None,
                },
                &key,
            )
        }
        (None, None) => bail!("give --token, or --uid (with --jwt-secret or --data-dir)"),
    };
    let client = Client::connect_with(a.server.as_str(), ClientOptions::default())
        .await
        .with_context(|| format!("connecting to {}", a.server))?;
    // Platform 3 = web/other in gobelieve's numbering.
    client
        .auth(&token, 3, &a.device, 2)
        .await
        .context("login refused")?;
    say(&format!(
        "logged in as uid {} (appid {}); type @UID text, /join ROOM, #text, /quit",
        client.uid(),
        client.appid()
    ));
    let handle = client.handle();
    let mut view = View::new(client.uid());
    let (_, mut events) = client.split();
    let printer = tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let Some(line) = view.describe(&ev) {
                say(&line);
            }
            if matches!(ev, Event::Closed(_)) {
                break;
            }
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut room: Option<i64> = None;
    let mut msgid = 0;
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/quit" {
            break;
        }
        if let Err(e) = command(&handle, line, &mut room, &mut msgid).await {
            say(&format!("error: {e}"));
        }
        if handle.is_closed() {
            break;
        }
    }
    handle.close();
    let _ = printer.await;
    Ok(())
}

async fn command(
    h: &ClientHandle,
    line: &str,
    room: &mut Option<i64>,
    msgid: &mut i32,
) -> anyhow::Result<()> {
    if let Some(rest) = line.strip_prefix('@') {
        let (to, text) = rest.split_once(' ').unwrap_or((rest, ""));
        let to: i64 = to.parse().with_context(|| format!("bad uid {to:?}"))?;
        *msgid += 1;
        let ack = h.send_im(to, text.as_bytes().to_vec(), *msgid).await?;
        if ack.is_ok() {
            say(&format!("ack @{to} #{msgid}"));
        } else {
            say(&format!("refused @{to} #{msgid}: status {}", ack.status));
        }
    } else if let Some(r) = line.strip_prefix("/join ") {
        let r: i64 = r
            .trim()
            .parse()
            .with_context(|| format!("bad room {r:?}"))?;
        if let Some(old) = room.take() {
            h.leave_room(old)?;
        }
        h.enter_room(r)?;
        *room = Some(r);
        say(&format!("joined room {r}"));
    } else if line == "/leave" {
        if let Some(r) = room.take() {
            h.leave_room(r)?;
            say(&format!("left room {r}"));
        }
    } else if let Some(text) = line.strip_prefix('#') {
        let Some(r) = *room else {
            bail!("join a room first: /join ROOM");
        };
        let ack = h.send_room_im(r, text.trim().as_bytes().to_vec()).await?;
        say(&format!("ack [room {r}] status {}", ack.status));
    } else {
        bail!("type @UID text, /join ROOM, #text or /quit");
    }
    Ok(())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// How events become lines: tells history from live and hides the user's
/// own echo.
struct View {
    uid: i64,
    /// Until the first sync batch after login ends, synced messages are
    /// what arrived while offline; afterwards a sync only catches up with a
    /// push whose METADATA did not continue our key (e.g. after our own
    /// send advanced the queue), so its messages are live.
    first_sync_done: bool,
}

impl View {
    fn new(uid: i64) -> View {
        View {
            uid,
            first_sync_done: false,
        }
    }

    /// One printable line per event worth showing.
    fn describe(&mut self, ev: &Event) -> Option<String> {
        match ev {
            Event::Message { msg, flag, .. } => self.message(msg, *flag, ""),
            Event::Synced { msg, flag, .. } => {
                let prefix = if self.first_sync_done {
                    ""
                } else {
                    "[history] "
                };
                self.message(msg, *flag, prefix)
            }
            Event::SyncDone { messages, .. } if !self.first_sync_done => {
                self.first_sync_done = true;
                Some(format!(
                    "-- {messages} message(s) while offline; live from here --"
                ))
            }
            Event::Room(m) => Some(format!(
                "[room {}] {}: {}",
                m.receiver,
                m.sender,
                text(&m.content)
            )),
            Event::Rt(m) => Some(format!("[rt] {}: {}", m.sender, text(&m.content))),
            Event::Notification(b) => Some(format!("[notification] {}", text(b))),
            Event::Closed(r) => Some(format!("connection closed: {r:?}")),
            _ => None,
        }
    }

    fn message(&self, msg: &Message, flag: u8, prefix: &str) -> Option<String> {
        match msg {
            // SELF: sent from this very device (the terminal printed the ACK).
            Message::Im(m) if m.sender == self.uid && flag & SELF != 0 => None,
            Message::Im(m) if m.sender == self.uid => Some(format!(
                "{prefix}me -> {}: {}",
                m.receiver,
                text(&m.content)
            )),
            Message::Im(m) => Some(format!("{prefix}{}: {}", m.sender, text(&m.content))),
            Message::GroupIm(m) if m.sender == self.uid && flag & SELF != 0 => None,
            Message::GroupIm(m) => Some(format!(
                "{prefix}[group {}] {}: {}",
                m.receiver,
                if m.sender == self.uid {
                    "me".to_string()
                } else {
                    m.sender.to_string()
                },
                text(&m.content)
            )),
            Message::System(b) => Some(format!("{prefix}[system] {}", text(b))),
            _ => None,
        }
    }
}

/// Prints a line and flushes, so piped output is seen at once.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
