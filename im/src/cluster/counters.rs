//! Subscription counting (spec §4.3): the im tells an imr about a user only
//! when it matters — first connection, first online connection, last online
//! connection gone, last connection gone.
//!
//! Per `(appid, uid)` one packed u32: low 16 bits = connections, high 16 bits
//! = online connections. Saturates rather than wrapping past 65 535.

/// What the imr must be told after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubChange {
    Subscribe { online: bool },
    Unsubscribe,
}

const TOTAL: u32 = 0xffff;

pub fn total(c: u32) -> u32 {
    c & TOTAL
}

pub fn online(c: u32) -> u32 {
    c >> 16
}

/// Adds a connection; returns the new counter and the message to send.
pub fn add(c: u32, is_online: bool) -> (u32, Option<SubChange>) {
    let (t, o) = (total(c), online(c));
    let t2 = (t + 1).min(TOTAL);
    let o2 = if is_online { (o + 1).min(TOTAL) } else { o };
    let change = if t == 0 {
        Some(SubChange::Subscribe { online: is_online })
    } else if o == 0 && is_online {
        Some(SubChange::Subscribe { online: true })
    } else {
        None
    };
    ((o2 << 16) | t2, change)
}

/// Removes a connection; returns the new counter and the message to send.
pub fn remove(c: u32, was_online: bool) -> (u32, Option<SubChange>) {
    let (t, o) = (total(c), online(c));
    let t2 = t.saturating_sub(1);
    let o2 = if was_online { o.saturating_sub(1) } else { o };
    let change = if t <= 1 {
        Some(SubChange::Unsubscribe)
    } else if was_online && o == 1 {
        Some(SubChange::Subscribe { online: false })
    } else {
        None
    };
    ((o2 << 16) | t2, change)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_the_spec() {
        let (c, ch) = add(0, false);
        assert_eq!(ch, Some(SubChange::Subscribe { online: false }));
        let (c, ch) = add(c, true);
        assert_eq!(ch, Some(SubChange::Subscribe { online: true }));
        let (c, ch) = add(c, true);
        assert_eq!(ch, None);
        assert_eq!((total(c), online(c)), (3, 2));
        let (c, ch) = remove(c, true);
        assert_eq!(ch, None);
        let (c, ch) = remove(c, true);
        assert_eq!(ch, Some(SubChange::Subscribe { online: false }));
        let (c, ch) = remove(c, false);
        assert_eq!(ch, Some(SubChange::Unsubscribe));
        assert_eq!(c, 0);
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let c = (TOTAL << 16) | TOTAL;
        let (c2, ch) = add(c, true);
        assert_eq!(c2, c);
        assert_eq!(ch, None);
    }
}
