//! Path templates (SPEC §11): the normalised request path, query dropped,
//! with every segment after the route's prefix that looks like an
//! identifier folded into `{id}`, so that `/api/orders/42` and
//! `/api/orders/43` count as one thing the monolith still serves. Pure
//! functions, written into a buffer the caller keeps, so the request path
//! allocates nothing here once the buffer has grown to its paths.

/// What a folded segment becomes.
pub const ID: &str = "{id}";

/// Writes the template of `path` into `out` (cleared first). `prefix` is
/// the route's normalised prefix; its segments stay literal even when they
/// look like identifiers (`/v1/2024/...` under a prefix `/v1/2024`). The
/// path is expected to be the normalised path the route matched, without
/// its query.
pub fn fold(path: &str, prefix: &str, out: &mut String) {
    out.clear();
    // The router matches segment by segment, so the path starts with the
    // prefix's segments; counting them (rather than slicing at the prefix's
    // length) keeps this right for any path it is handed.
    let mut literal = prefix.split('/').filter(|s| !s.is_empty()).count();
    let rest = path.strip_prefix('/').unwrap_or(path);
    out.push('/');
    for (i, segment) in rest.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if literal > 0 {
            literal -= 1;
            out.push_str(segment);
        } else if is_identifier(segment) {
            out.push_str(ID);
        } else {
            out.push_str(segment);
        }
    }
}

/// Whether `segment` reads as an identifier rather than a name: all
/// digits; a UUID (any case); 16 or more hex digits (any case); 24 or more
/// characters of the base64url alphabet with at least one digit (the digit
/// keeps long words such as `customer_preferences_page` literal).
pub fn is_identifier(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    // One pass over the segment: which alphabets it stays within.
    let (mut digits, mut hex, mut base64url, mut any_digit) = (true, true, true, false);
    for &b in bytes {
        let digit = b.is_ascii_digit();
        any_digit |= digit;
        digits &= digit;
        hex &= b.is_ascii_hexdigit();
        base64url &= is_base64url(b);
        if !base64url {
            // Outside every alphabet (a UUID's too: its dashes are base64url).
            return false;
        }
    }
    digits || (hex && bytes.len() >= 16) || (any_digit && bytes.len() >= 24) || is_uuid(bytes)
}

/// `8-4-4-4-12` hex digits, any case.
fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(path: &str, prefix: &str) -> String {
        let mut out = String::new();
        fold(path, prefix, &mut out);
        out
    }

    #[test]
    fn the_spec_example_folds_both_identifiers() {
        assert_eq!(
            template("/api/orders/42/items/9f1c2b7e4a5d6c8f", "/api/orders"),
            "/api/orders/{id}/items/{id}"
        );
    }

    #[test]
    fn all_digits_fold() {
        assert_eq!(template("/users/7", "/"), "/users/{id}");
        assert_eq!(
            template("/users/0000000000000000000000007", "/"),
            "/users/{id}"
        );
    }

    #[test]
    fn uuids_fold_in_any_case() {
        assert_eq!(
            template("/o/123e4567-e89b-12d3-a456-426614174000", "/o"),
            "/o/{id}"
        );
        assert_eq!(
            template("/o/123E4567-E89B-12D3-A456-426614174000/x", "/o"),
            "/o/{id}/x"
        );
    }

    #[test]
    fn a_uuid_shape_with_a_non_hex_digit_or_dashes_misplaced_is_no_uuid() {
        assert!(!is_uuid(b"123e4567-e89b-12d3-a456-42661417400g"));
        assert!(!is_uuid(b"123e4567e-89b-12d3-a456-42661417400"));
        assert!(!is_uuid(b"123e4567-e89b-12d3-a456-4266141740001"));
        // Such a string still folds as 24+ base64url characters with a
        // digit; one outside both alphabets stays literal.
        assert!(is_identifier("123e4567-e89b-12d3-a456-42661417400g"));
        assert!(!is_identifier("123e4567.e89b.12d3.a456.426614174000"));
    }

    #[test]
    fn sixteen_hex_digits_fold_fifteen_do_not() {
        assert!(is_identifier("deadbeefcafe0123"));
        assert!(is_identifier("DEADBEEFCAFEBABE"));
        assert!(!is_identifier("deadbeefcafe012"));
        assert!(!is_identifier("DEADBEEFCAFEBAB"));
    }

    #[test]
    fn twenty_four_base64url_characters_with_a_digit_fold() {
        assert!(is_identifier("aGVsbG8td29ybGQtaGk_x-y1"));
        assert_eq!(
            template("/files/aGVsbG8td29ybGQtaGk_x-y1/raw", "/files"),
            "/files/{id}/raw"
        );
    }

    #[test]
    fn twenty_three_base64url_characters_do_not_fold() {
        assert!(!is_identifier("aGVsbG8td29ybGQtaGk_x-1"));
    }

    #[test]
    fn base64url_without_a_digit_does_not_fold() {
        assert!(!is_identifier("customer_preferences_page"));
        assert!(!is_identifier("abcdefghijklmnopqrstuvwxYZ_-"));
    }

    #[test]
    fn characters_outside_the_alphabets_keep_a_segment_literal() {
        assert!(!is_identifier("12.json"));
        assert!(!is_identifier("aGVsbG8td29ybGQtaGk_x-y1="));
        assert!(!is_identifier("%2F12345"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("v2"));
    }

    #[test]
    fn the_prefix_segments_stay_literal_even_when_they_look_like_ids() {
        assert_eq!(
            template("/v1/2024/reports/7", "/v1/2024"),
            "/v1/2024/reports/{id}"
        );
        assert_eq!(template("/v1/2024", "/v1/2024"), "/v1/2024");
    }

    #[test]
    fn the_root_prefix_keeps_nothing_literal() {
        assert_eq!(template("/", "/"), "/");
        assert_eq!(template("/42", "/"), "/{id}");
    }

    #[test]
    fn empty_segments_and_a_trailing_slash_are_kept() {
        assert_eq!(template("/a/42/", "/a"), "/a/{id}/");
        assert_eq!(template("/a//42", "/a"), "/a//{id}");
    }

    #[test]
    fn the_buffer_is_reused() {
        let mut out = String::new();
        fold("/api/orders/42/items/7", "/api/orders", &mut out);
        let capacity = out.capacity();
        fold("/api/orders/1", "/api/orders", &mut out);
        assert_eq!(out, "/api/orders/{id}");
        assert_eq!(out.capacity(), capacity);
    }
}
