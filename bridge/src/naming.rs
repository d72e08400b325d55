//! Exposed tool names: `<prefix>__<tool>`, always within `^[a-zA-Z0-9_-]{1,64}$` (what Claude's
//! front end and OpenAI accept). Names are mapped through a table, not parsed back, so the
//! mapping is reversible however a name had to be sanitised or shortened.

pub const SEPARATOR: &str = "__";
pub const MAX_LEN: usize = 64;

/// FNV-1a, 64 bit: stable across runs and platforms, so shortened names never change between
/// restarts (clients keep working with names they saw before).
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn sanitize(s: &str, out: &mut String) {
    for c in s.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '_'
        });
    }
}

/// Fits `name` into [`MAX_LEN`] by keeping a head and appending a hash of `key`.
fn fit(name: String, key: &[&str]) -> String {
    if name.len() <= MAX_LEN {
        return name;
    }
    let suffix = format!("_{:08x}", stable_hash(key) as u32);
    // `name` is ASCII after sanitising, so any byte index is a char boundary.
    let mut head = name;
    head.truncate(MAX_LEN - suffix.len());
    head.push_str(&suffix);
    head
}

/// The preferred exposed name of `tool` from an upstream with `prefix` (`""` = no prefix).
pub fn expose(prefix: &str, tool: &str) -> String {
    let mut name = String::with_capacity(prefix.len() + SEPARATOR.len() + tool.len());
    if !prefix.is_empty() {
        sanitize(prefix, &mut name);
        name.push_str(SEPARATOR);
    }
    sanitize(tool, &mut name);
    if name.is_empty() {
        name.push('_');
    }
    fit(name, &[prefix, tool])
}

/// A different, still valid name for the `attempt`-th collision of `preferred`.
pub fn disambiguate(preferred: &str, upstream: &str, tool: &str, attempt: u32) -> String {
    let suffix = format!(
        "_{:08x}",
        stable_hash(&[upstream, tool, &attempt.to_string()]) as u32
    );
    let mut head = preferred.to_owned();
    head.truncate(MAX_LEN - suffix.len());
    head + &suffix
}

/// The URI-scheme prefix of an upstream's resources: `<prefix>+<original URI>` keeps every
/// exposed URI a valid URI (scheme characters are letters, digits, `+`, `-`, `.`), so `_`
/// becomes `.` and a leading non-letter gets a `u`. Empty prefix = URIs unchanged.
pub fn uri_prefix(prefix: &str) -> String {
    let mut out: String = prefix
        .chars()
        .map(|c| if c == '_' { '.' } else { c })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) && !out.is_empty() {
        out.insert(0, 'u');
    }
    out
}

/// The URI (or URI template) clients see for `uri` from an upstream with `prefix`.
pub fn expose_uri(prefix: &str, uri: &str) -> String {
    if prefix.is_empty() {
        uri.to_owned()
    } else {
        format!("{}+{uri}", uri_prefix(prefix))
    }
}

/// Splits an exposed URI into its scheme prefix and the original URI, if it has one.
pub fn split_uri(uri: &str) -> Option<(&str, &str)> {
    let colon = uri.find(':')?;
    let plus = uri[..colon].find('+')?;
    Some((&uri[..plus], &uri[plus + 1..]))
}

pub fn is_valid(name: &str) -> bool {
    (1..=MAX_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_sanitises() {
        assert_eq!(expose("files", "read_file"), "files__read_file");
        assert_eq!(expose("", "read_file"), "read_file");
        assert_eq!(
            expose("gh", "repo.list/all items"),
            "gh__repo_list_all_items"
        );
        assert_eq!(expose("", ""), "_");
        assert_eq!(expose("x", "ünï"), "x___n_");
    }

    #[test]
    fn uris_round_trip() {
        assert_eq!(expose_uri("", "test://x"), "test://x");
        assert_eq!(expose_uri("my_fs", "file:///a b"), "my.fs+file:///a b");
        assert_eq!(expose_uri("9z", "x:y"), "u9z+x:y");
        assert_eq!(
            split_uri("my.fs+file:///a+b"),
            Some(("my.fs", "file:///a+b"))
        );
        assert_eq!(split_uri("file:///a+b"), None);
        assert_eq!(split_uri("no-colon+x"), None);
    }

    #[test]
    fn long_names_are_shortened_deterministically() {
        let tool = "a".repeat(100);
        let a = expose("up", &tool);
        assert_eq!(a.len(), MAX_LEN);
        assert!(is_valid(&a));
        assert_eq!(a, expose("up", &tool));
        assert_ne!(a, expose("up", &"a".repeat(101)));
    }

    #[test]
    fn disambiguated_names_are_valid_and_distinct() {
        let base = expose("up", "t.x");
        let d1 = disambiguate(&base, "up", "t.x", 1);
        let d2 = disambiguate(&base, "up", "t.x", 2);
        assert!(is_valid(&d1) && is_valid(&d2));
        assert_ne!(d1, d2);
        assert_ne!(d1, base);
        let long = disambiguate(&"z".repeat(64), "up", "t", 1);
        assert!(is_valid(&long));
    }
}
