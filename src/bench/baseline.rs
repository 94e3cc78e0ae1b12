//! `ferry bench baseline-server`: the bare fan-out limit of this machine.
//!
//! A minimal Tokio server that speaks just enough of the client protocol for
//! `ferry bench room` to run against it unchanged: AUTH_TOKEN is answered
//! with AUTH_STATUS 0 (no token check), PING with PONG, ENTER_ROOM adds the
//! connection to the one room, and a ROOM_IM is encoded once into a frame
//! (seq 0) whose bytes are shared by every other member, then ACKed.
//!
//! Each connection is one task shaped like Ferry's (readiness reads, replies
//! appended to the write buffer, a queue of shared frames filled by other
//! tasks, eager non-blocking writes of everything ready in one syscall), so
//! the difference to Ferry is what Ferry does on top: sessions, per-connection
//! seq numbers and headers, slow-consumer accounting, stats, timers.

use anyhow::Context;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::Args;
use ferry_common::protocol::command::{
    ACK, AUTH_STATUS, AUTH_TOKEN, ENTER_ROOM, LEAVE_ROOM, PING, PONG, ROOM_IM,
};
use ferry_common::protocol::{HEADER_LEN, Header, MAX_CLIENT_BODY};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Args, Debug)]
pub struct BaselineArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:24000")]
    pub listen: SocketAddr,
}

/// A member's queue of encoded frames, filled by senders' tasks.
#[derive(Default)]
struct Queue {
    frames: Mutex<Vec<Bytes>>,
    notify: Notify,
}

impl Queue {
    fn push(&self, b: Bytes) {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(b);
        self.notify.notify_one();
    }
}

#[derive(Default)]
struct Room {
    members: Mutex<HashMap<u64, Arc<Queue>>>,
    next_id: AtomicU64,
}
pub async fn run(a: BaselineArgs) -> anyhow::Result<()> {
    if !a.listen.ip().is_loopback() {
        anyhow::bail!("the baseline server only listens on loopback addresses");
    }
    let listener = TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    eprintln!("baseline fan-out server on {}", a.listen);
    let room = Arc::new(Room::default());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of fds and the like: keep serving the others.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let room = room.clone();
        tokio::spawn(async move {
            let id = room.next_id.fetch_add(1, Ordering::Relaxed);
            let _ = serve(stream, id, &room).await;
            room.members
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        });
    }
}

fn frame(cmd: u8, version: u8, seq: i32, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_LEN + body.len());
    Header {
        len: body.len(),
        seq,
        cmd,
        version,
        flag: 0,
    }
    .write(&mut b);
    b.put_slice(body);
    b.freeze()
}

async fn serve(stream: TcpStream, id: u64, room: &Room) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let queue = Arc::new(Queue::default());
    let mut rbuf = BytesMut::new();
    let mut out = BytesMut::new();
    let mut scratch = vec![0u8; 16 * 1024];
    let mut taken = Vec::new();
    loop {
        std::mem::swap(
            &mut *queue.frames.lock().unwrap_or_else(|e| e.into_inner()),
            &mut taken,
        );
        for b in taken.drain(..) {
            out.extend_from_slice(&b);
        }
        while !out.is_empty() {
            match stream.try_write(&out) {
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        if out.is_empty() && out.capacity() > 256 * 1024 {
            out = BytesMut::new();
        }
        tokio::select! {
            biased;
            r = stream.writable(), if !out.is_empty() => r?,
            r = stream.readable() => {
                r?;
                let n = match stream.try_read(&mut scratch) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e.into()),
                };
                rbuf.extend_from_slice(&scratch[..n]);
                handle_frames(&mut rbuf, &mut out, id, &queue, room)?;
            }
            _ = queue.notify.notified() => {}
        }
    }
}

fn handle_frames(
    buf: &mut BytesMut,
    out: &mut BytesMut,
    id: u64,
    me: &Arc<Queue>,
    room: &Room,
) -> anyhow::Result<()> {
    while buf.len() >= HEADER_LEN {
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&buf[..HEADER_LEN]);
        let h = Header::parse(&h, MAX_CLIENT_BODY)?;
        if buf.len() < HEADER_LEN + h.len {
            break;
        }
        buf.advance(HEADER_LEN);
        let body = buf.split_to(h.len);
        let v = h.version;
        match h.cmd {
            AUTH_TOKEN => out.extend_from_slice(&frame(AUTH_STATUS, v, 0, &0i32.to_be_bytes())),
            PING => out.extend_from_slice(&frame(PONG, v, 0, &[])),
            ENTER_ROOM => {
                room.members
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, me.clone());
            }
            LEAVE_ROOM => {
                room.members
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            }
            ROOM_IM => {
                let shared = frame(ROOM_IM, v, 0, &body);
                for (m, q) in room
                    .members
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                {
                    if *m != id {
                        q.push(shared.clone());
                    }
                }
                let mut ack = [0u8; 5];
                ack[..4].copy_from_slice(&h.seq.to_be_bytes());
                out.extend_from_slice(&frame(ACK, v, 0, &ack));
            }
            _ => {}
        }
    }
    Ok(())
}
