//! `ferry chat` as a real process against a real `ferry im`: with piped
//! stdin/stdout (history at login, sending with `@uid`, ACKs, live receive,
//! rooms, clean exit at end of input), and as a person uses it, in a
//! pseudo-terminal (util-linux `script` allocates it), two users at once.

mod support;
mod wire;

use ferry_common::protocol::command::{IM, ROOM_IM};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{Im, SECRET, ferry_bin, token};
use wire::{Raw, WAIT, im_of, rt_of};

struct Chat {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Chat {
    fn start(args: &[&str]) -> Chat {
        let mut cmd = Command::new(ferry_bin());
        cmd.arg("chat").args(args);
        Chat::spawn(cmd)
    }

    /// `ferry chat` on a pseudo-terminal, as typed into by a person: the
    /// terminal echoes what is typed, and output lines end in CR LF.
    fn start_tty(args: &[&str]) -> Chat {
        let quoted: Vec<String> = std::iter::once(ferry_bin())
            .chain(["chat"])
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let mut cmd = Command::new("script");
        // -q quiet, -f flush at once, -e child's exit code, -c command;
        // the typescript goes nowhere.
        cmd.args(["-qfec", &quoted.join(" "), "/dev/null"]);
        Chat::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Chat {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ferry chat");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.trim_end_matches('\r').to_string()).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Chat {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to chat");
        stdin.flush().expect("flush");
    }

    /// Waits for an output line containing `needle`.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("chat never printed {needle:?}; it printed {:#?}", self.seen),
            }
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_sends_receives_and_shows_history() {
    let im = Im::start(&[]);
    // uid 2 writes to uid 1 while 1 is offline: chat must show it as history.
    let mut b = Raw::login(im.tcp, 2, "peer", 2).await.named("peer");
    b.im(2, 1, 1, "while you were away").await;

    let server = im.tcp.to_string();
    let mut chat = Chat::start(&["--server", &server, "--token", &token(1)]);
    chat.expect("logged in as uid 1");
    let line = chat.expect("while you were away");
    assert!(line.starts_with("[history] 2:"), "{line}");

    chat.type_line("@2 hello from the terminal");
    chat.expect("ack @2 #1");
    let (_, f, _) = b.expect_push(IM).await;
    assert_eq!(im_of(&f).content, "hello from the terminal".as_bytes());

    b.im(2, 1, 2, "live reply").await;
    let line = chat.expect("live reply");
    assert_eq!(line, "2: live reply");

    // Rooms: both enter room 9; a line starting with # goes to the room.
    b.enter_room(9).await;
    // PING round trip: the server has handled b's ENTER_ROOM before the
    // chat's room message can be broadcast.
    b.assert_quiet().await;
    chat.type_line("/join 9");
    chat.expect("joined room 9");
    chat.type_line("#hi room");
    chat.expect("ack [room 9] status 0");
    let f = b.expect(ROOM_IM).await;
    assert_eq!(rt_of(&f).content, "hi room".as_bytes());

    chat.type_line("@notanumber x");
    chat.expect("error: bad uid");

    // End of input: the client leaves cleanly.
    chat.stdin.take();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = chat.child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "chat did not exit at end of input"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn chat_mints_its_token_from_uid_and_secret() {
    let im = Im::start(&[]);
    let server = im.tcp.to_string();
    let mut chat = Chat::start(&["--server", &server, "--uid", "42", "--jwt-secret", SECRET]);
    chat.expect("logged in as uid 42 (appid 7)");
}

/// Two people chatting in terminals, the way the issue reported it: a reply
/// that arrives while both are online prints live (`2: text`, not
/// `[history] 2: text`), one's own message never comes back as incoming,
/// the user's second device shows it as `me -> 2: text`, and `--uid` finds
/// the secret in the server's data dir like `ferry token --data-dir`.
#[test]
fn two_people_chat_live_in_terminals() {
    let im = Im::start(&[]);
    // What `ferry im` keeps when started without --jwt-secret (the harness
    // gives it the same secret on the command line).
    std::fs::write(im.dir.join("jwt_secret"), SECRET).expect("write secret");
    let server = im.tcp.to_string();
    let dir = im.dir.display().to_string();
    let start = |uid: &str, device: &str| {
        let mut c = Chat::start_tty(&[
            "--server",
            &server,
            "--uid",
            uid,
            "--data-dir",
            &dir,
            "--device",
            device,
        ]);
        c.expect(&format!("logged in as uid {uid}"));
        // The first sync is over: from here on everything is live. (A
        // device whose first sync is still running when its user sends from
        // another device starts from the key that device stored.)
        c.expect("live from here");
        c
    };
    let mut alice = start("1", "laptop");
    let mut bob = start("2", "laptop");

    alice.type_line("@2 hi bob");
    alice.expect("ack @2 #1");
    assert_eq!(bob.expect("hi bob"), "1: hi bob");

    // Alice's own message advanced her queue, so this push makes her client
    // sync: it must still print live, and her own message must not reappear.
    bob.type_line("@1 hi alice");
    bob.expect("ack @1 #1");
    assert_eq!(alice.expect(": hi alice"), "2: hi alice");
    alice.type_line("@2 how are you");
    alice.expect("ack @2 #2");
    assert_eq!(bob.expect(": how are you"), "1: how are you");
    bob.type_line("@1 fine");
    assert_eq!(alice.expect(": fine"), "2: fine");
    // Each saw the other's lines (above); now check nothing else came back.
    for (who, c, own) in [
        ("alice", &alice, ["1: hi bob", "1: how are you"]),
        ("bob", &bob, ["2: hi alice", "2: fine"]),
    ] {
        let wrong: Vec<_> = c
            .seen
            .iter()
            .filter(|l| {
                l.contains("[history]") || l.starts_with("me -> ") || own.contains(&l.as_str())
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{who} printed {wrong:?}; all: {:#?}",
            c.seen
        );
    }

    // Alice's phone (a second device of uid 1): what she sends from the
    // laptop shows there as hers; bob's messages reach both devices live.
    let mut phone = start("1", "phone");
    alice.type_line("@2 from the laptop");
    alice.expect("ack @2 #3");
    assert_eq!(phone.expect("from the laptop"), "me -> 2: from the laptop");
    bob.type_line("@1 to both");
    assert_eq!(phone.expect("to both"), "2: to both");
    assert_eq!(alice.expect(": to both"), "2: to both");
}
