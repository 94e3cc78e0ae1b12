//! `TCP_INFO` of a socket: how many bytes the peer's TCP stack confirmed.
//!
//! `tcpi_bytes_acked` counts every byte the peer acknowledged on this
//! connection; unlike the send queue (`SIOCOUTQ`, `tcpi_unacked`) it keeps
//! its value after a reset, when the kernel purges the send queue.

use std::os::fd::RawFd;

/// What the kernel says about a socket's outgoing bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Bytes the peer's TCP stack acknowledged.
    pub acked: u64,
    /// Distinct bytes transmitted at least once (sent minus retransmitted).
    pub transmitted: u64,
}

/// Bytes the peer acknowledged, or `None` when the kernel does not say
/// (closed descriptor, not a TCP socket, not Linux).
pub fn bytes_acked(fd: RawFd) -> Option<u64> {
    counters(fd).map(|c| c.acked)
}

/// The socket's [`Counters`]; `None` when the kernel does not say (closed
/// descriptor, not a TCP socket, a kernel before 4.19, not Linux).
#[cfg(target_os = "linux")]
pub fn counters(fd: RawFd) -> Option<Counters> {
    let mut info: libc::tcp_info = unsafe_zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a valid, writable `tcp_info` and `len` its size; the
    // kernel writes at most `len` bytes and reports how many it wrote. A
    // stale descriptor only makes the call fail (callers hold the socket
    // open while they ask, see `Ledger`).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    // Older kernels fill a shorter struct; then nothing can be told.
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_retrans) + 8;
    (rc == 0 && len as usize >= needed).then(|| Counters {
        acked: info.tcpi_bytes_acked,
        transmitted: info.tcpi_bytes_sent.saturating_sub(info.tcpi_bytes_retrans),
    })
}

#[cfg(target_os = "linux")]
fn unsafe_zeroed() -> libc::tcp_info {
    // SAFETY: `tcp_info` is a plain C struct of integers; all-zero is valid.
    unsafe { std::mem::zeroed() }
}

#[cfg(not(target_os = "linux"))]
pub fn counters(_fd: RawFd) -> Option<Counters> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    /// On an accepted socket (every client connection) the count is data
    /// bytes only; an active open counts its SYN too.
    #[test]
    fn counts_what_the_peer_received() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client =
            std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = l.accept().expect("accept");
        server.write_all(&[7; 100]).expect("write");
        let mut buf = [0; 100];
        client.read_exact(&mut buf).expect("read");
        // The client read all 100 bytes, so its kernel has them; its ACK may
        // still be on the way, a reply carries it for sure.
        client.write_all(&[1]).expect("reply");
        server.read_exact(&mut buf[..1]).expect("read reply");
        assert_eq!(
            counters(server.as_raw_fd()),
            Some(Counters {
                acked: 100,
                transmitted: 100
            })
        );
        assert_eq!(bytes_acked(-1), None);
    }
}
