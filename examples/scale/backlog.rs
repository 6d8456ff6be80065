//! The longest accept queue of any listening IPv4 TCP socket on this machine, asked of the kernel through
//! `NETLINK_SOCK_DIAG` (what `ss -lt` does): the kernel walks only its listening sockets and answers each one's
//! accept queue (`idiag_rqueue` of a listener). Reading `/proc/net/tcp` instead walks the whole established
//! hash table on every read: at the burst's 20 samples a second it cost about a third of this process's CPU
//! (5 of 15 CPU s in a `perf` profile of a burst run) and held an emulator worker thread while it ran.

use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLM_F_REQUEST | NLM_F_DUMP`.
const REQUEST_DUMP: u16 = 0x1 | 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const AF_INET: u8 = 2;
const IPPROTO_TCP: u8 = 6;
/// `1 << TCP_LISTEN`.
const LISTEN_STATES: u32 = 1 << 10;
const HEADER_LEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then a 48-byte `inet_diag_sockid`.
const REQUEST_LEN: usize = 56;
/// Offset of `idiag_rqueue` in `struct inet_diag_msg`: 4 bytes, the 48-byte socket id, `idiag_expires`.
const RQUEUE_OFFSET: usize = 56;

/// The longest accept queue of a listening IPv4 TCP socket now, or `None` when the kernel cannot be asked.
pub fn max_accept_backlog() -> Option<u64> {
    let socket = rustix::net::socket(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        Some(netlink::SOCK_DIAG),
    )
    .ok()?;
    let mut request = Vec::with_capacity(HEADER_LEN + REQUEST_LEN);
    let total = u32::try_from(HEADER_LEN + REQUEST_LEN).ok()?;
    request.extend_from_slice(&total.to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&REQUEST_DUMP.to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    request.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    request.extend_from_slice(&[AF_INET, IPPROTO_TCP, 0, 0]);
    request.extend_from_slice(&LISTEN_STATES.to_ne_bytes());
    request.resize(HEADER_LEN + REQUEST_LEN, 0);
    rustix::net::sendto(
        &socket,
        &request,
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )
    .ok()?;
    let mut longest = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let (received, _) = rustix::net::recv(&socket, &mut buffer[..], RecvFlags::empty()).ok()?;
        let mut messages = buffer.get(..received)?;
        if messages.is_empty() {
            return Some(longest);
        }
        while messages.len() >= HEADER_LEN {
            let length =
                usize::try_from(u32::from_ne_bytes(messages[..4].try_into().ok()?)).ok()?;
            let kind = u16::from_ne_bytes(messages[4..6].try_into().ok()?);
            if length < HEADER_LEN || length > messages.len() {
                return None;
            }
            match kind {
                NLMSG_DONE => return Some(longest),
                NLMSG_ERROR => return None,
                _ => {
                    let at = HEADER_LEN + RQUEUE_OFFSET;
                    let rqueue = messages.get(at..at + 4)?;
                    longest = longest.max(u64::from(u32::from_ne_bytes(rqueue.try_into().ok()?)));
                }
            }
            // Messages are aligned to 4 bytes.
            messages = messages
                .get(length.next_multiple_of(4)..)
                .unwrap_or_default();
        }
    }
}
