//! The digests a scan compares with: one implementation for both back ends, so an account or
//! member list digested by one (and copied by `migrate-store`) matches on the other.

use accessrail_domain::Account;

/// The digest of a group's member list (sorted, without repeats).
pub(crate) fn members_digest(sorted_users: &[i64]) -> i64 {
    let bytes: Vec<u8> = sorted_users.iter().flat_map(|u| u.to_le_bytes()).collect();
    fnv(&[&bytes])
}

/// FNV-1a, 64 bits: a digest that stays the same across builds and platforms.
fn fnv(parts: &[&[u8]]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

/// The digest of what a scan compares for an account.
pub(crate) fn digest(a: &Account, fields: &str) -> i64 {
    let opt = |v: Option<&str>| v.map_or(b"\x00".to_vec(), |s| [b"\x01", s.as_bytes()].concat());
    fnv(&[
        &opt(a.name.as_deref()),
        &opt(a.email.as_deref()),
        &[u8::from(a.is_active)],
        &opt(a.role_id.map(|r| r.to_string()).as_deref()),
        &opt(a.role.as_deref()),
        &opt(a.is_admin.map(|x| if x { "1" } else { "0" })),
        fields.as_bytes(),
    ])
}
