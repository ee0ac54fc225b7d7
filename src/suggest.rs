//! "Did you mean ...?": the closest of a set of valid names to a mistyped
//! one, for config errors (unknown upstreams, unknown keys) and the command
//! line (a mistyped subcommand). One home so that every suggestion figway
//! makes follows the same rule.
//!
//! The distance is Damerau-Levenshtein in its optimal-string-alignment form:
//! insertions, deletions, substitutions and swaps of two neighbours each
//! cost 1, so `chekc` is one edit from `check` (plain Levenshtein counts a
//! swap as two, and the commonest typo would miss). A name is suggested only
//! when it is within a third of the typed word's length (at least 1), as
//! rustc and cargo do: close enough to be the same word mistyped, far
//! enough apart that `order` never suggests `monolith`.

/// The number of edits between `a` and `b`, counted in characters.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows of the dynamic-programming table: the swap looks two back.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The candidate closest to `typed`, if one is close enough to be what was
/// meant; ties go to the earliest candidate, so the answer does not depend
/// on hash-map order when callers pass names in file order.
pub fn closest<'c>(typed: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let len = typed.chars().count();
    let limit = (len / 3).max(1);
    let mut best: Option<(usize, &'c str)> = None;
    for candidate in candidates {
        // The length difference alone is a lower bound: skip the table for
        // names that cannot be close (a config may name thousands).
        if candidate.chars().count().abs_diff(len) > limit || candidate == typed {
            continue;
        }
        let d = distance(typed, candidate);
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, name)| name)
}

/// ` (did you mean "NAME"?)` for the closest candidate, or an empty string:
/// ready to append to a message.
pub fn did_you_mean<'c>(typed: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    match closest(typed, candidates) {
        Some(name) => format!(" (did you mean {name:?}?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits_and_swaps() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("check", "check"), 0);
        assert_eq!(distance("order", "orders"), 1); // insertion
        assert_eq!(distance("orders", "order"), 1); // deletion
        assert_eq!(distance("chack", "check"), 1); // substitution
        assert_eq!(distance("chekc", "check"), 1); // swap
        assert_eq!(distance("strip_prefx", "strip_prefix"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        // Characters, not bytes.
        assert_eq!(distance("café", "cafe"), 1);
    }

    #[test]
    fn closest_suggests_only_names_within_a_third_of_the_length() {
        let names = ["monolith", "orders", "users"];
        assert_eq!(closest("order", names), Some("orders"));
        assert_eq!(closest("user", names), Some("users"));
        assert_eq!(closest("monolyth", names), Some("monolith"));
        assert_eq!(closest("payments", names), None);
        // Short words allow one edit, no more.
        assert_eq!(closest("ot", ["to"]), Some("to"));
        assert_eq!(closest("xy", ["to"]), None);
        // Long words allow more.
        assert_eq!(
            closest("strp_prefx", ["strip_prefix", "prefix"]),
            Some("strip_prefix")
        );
        // An exact match is not a suggestion.
        assert_eq!(closest("orders", ["orders"]), None);
        assert_eq!(closest("anything", std::iter::empty()), None);
    }

    #[test]
    fn ties_go_to_the_first_candidate() {
        assert_eq!(closest("ab", ["ac", "ad"]), Some("ac"));
        assert_eq!(closest("ab", ["ad", "ac"]), Some("ad"));
        // A closer later candidate still wins.
        assert_eq!(closest("abcdef", ["abxdxf", "abcdex"]), Some("abcdex"));
    }

    #[test]
    fn did_you_mean_reads_as_a_suffix() {
        assert_eq!(
            did_you_mean("order", ["orders"]),
            " (did you mean \"orders\"?)"
        );
        assert_eq!(did_you_mean("zzz", ["orders"]), "");
    }
}
