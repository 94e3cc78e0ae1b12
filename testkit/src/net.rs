//! Loopback ports and readiness for the processes tests start.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

/// Ports the harness hands out: below the kernel's ephemeral range
/// (32768–60999 here), so an outgoing client connection of a concurrent test
/// can never take a port between this check and the server's bind, and clear
/// of every default port of ferry (23000, 13891, 14891, 24430, 6666, 4444).
pub const PORT_RANGE: std::ops::Range<u16> = 15_000..23_000;

/// A port nobody listens on right now and that this test process has not
/// handed out before (so a server restarted on its old port cannot collide
/// with a newer one). Each process starts at its own offset in the range.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORT_RANGE.end - PORT_RANGE.start);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = PORT_RANGE.start + n as u16;
        if TcpListener::bind(("0.0.0.0", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port in {PORT_RANGE:?}");
}

/// Polls until something accepts on `addr` (bounded), as the server has no
/// other way to say it is ready.
pub fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) {
    if let Err(e) = try_wait_listening(addr, child, what) {
        panic!("{e}");
    }
}

/// [`wait_listening`] that reports instead of panicking, so a caller can
/// add the process's log to the failure.
pub fn try_wait_listening(addr: SocketAddr, child: &mut Child, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{what} exited before listening on {addr}: {status}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{what} did not listen on {addr} within 20 s"))
}
