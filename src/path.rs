//! Request path normalisation (SPEC §3): decode percent-encoded unreserved
//! characters, upper-case the escapes that stay, remove dot segments, refuse to
//! climb above the root. `%2F` stays encoded and so never splits a segment.
//!
//! Most paths need none of this; they are checked in one pass and returned
//! borrowed, so the common request allocates nothing here.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `..` segments reach above `/`.
    AboveRoot,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// Not an origin-form path (`*`, empty).
    NotAbsolute,
}

impl PathError {
    pub fn message(self) -> &'static str {
        match self {
            PathError::AboveRoot => "path climbs above the root",
            PathError::BadEscape => "invalid percent-encoding in path",
            PathError::NotAbsolute => "path must start with /",
        }
    }
}

pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if !path.contains('%') && !has_dot_segment(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    Ok(Cow::Owned(remove_dot_segments(&decoded)?))
}

fn has_dot_segment(path: &str) -> bool {
    // A dot segment starts right after a slash, and `path` starts with
    // one: without "/." there is none, and that substring search is far
    // cheaper than splitting every request's path (routing and the legacy
    // inventory both ask).
    path.contains("/.") && path.split('/').any(|s| s == "." || s == "..")
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            // Non-'%' bytes are copied as they are; the input was a &str, and
            // we only ever split it at ASCII positions.
            let next = path[i..].find('%').map_or(path.len(), |n| i + n);
            out.push_str(&path[i..next]);
            i = next;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadEscape);
        };
        let byte = hi << 4 | lo;
        if is_unreserved(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
            out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
        }
        i += 3;
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on a path that starts with `/`, except that `..` at the
/// root is an error rather than silently dropped: a client asking for
/// `/../etc` is probing, not navigating.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            s => {
                out.push(s);
                continue;
            }
        }
        // A trailing dot segment leaves a directory: `/a/b/..` is `/a/`.
        if i == last {
            out.push("");
        }
    }
    let mut result = String::with_capacity(path.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if result.is_empty() {
        result.push('/');
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p).map(|c| c.into_owned())
    }

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(normalize("/api/orders/42"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/a/.hidden/..x"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn dot_segments() {
        assert_eq!(n("/api/orders/../users/1").unwrap(), "/api/users/1");
        assert_eq!(n("/a/./b").unwrap(), "/a/b");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/b/.").unwrap(), "/a/b/");
        assert_eq!(n("/a/..").unwrap(), "/");
        assert_eq!(n("/.").unwrap(), "/");
        assert_eq!(n("/a//../b").unwrap(), "/a/b");
        assert_eq!(n("/../etc"), Err(PathError::AboveRoot));
        assert_eq!(n("/a/../.."), Err(PathError::AboveRoot));
        assert_eq!(n("/.."), Err(PathError::AboveRoot));
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(n("/%61pi/%7euser").unwrap(), "/api/~user");
        assert_eq!(n("/api/%2e%2e/x").unwrap(), "/x");
        assert_eq!(n("/%2e%2e/etc"), Err(PathError::AboveRoot));
        assert_eq!(n("/a%2fb/c").unwrap(), "/a%2Fb/c");
        assert_eq!(n("/a%2F..%2Fb").unwrap(), "/a%2F..%2Fb");
        assert_eq!(n("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(n("/bad%zz"), Err(PathError::BadEscape));
        assert_eq!(n("/bad%4"), Err(PathError::BadEscape));
        assert_eq!(n("*"), Err(PathError::NotAbsolute));
    }
}
