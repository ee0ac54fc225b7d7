//! A head's start line and field lines, scanned in one pass to the blank
//! line that ends them, accepting exactly what `httparse` (1.x, default
//! `ParserConfig`) accepts: blank lines before the start line skipped; a
//! request line as a token, one space, a target of bytes `!` to `~` or
//! past ASCII (valid UTF-8), one space, `HTTP/1.0` or `HTTP/1.1`; a status
//! line as that version, one space, three digits, then a space and a
//! reason or the line's end; each field a token, a colon, the
//! value's bytes (tab, 0x20-0x7e, 0x80-0xff) with the white space around
//! it left out; lines ended by CRLF or a bare LF; no folded lines, no
//! space before a colon. Where a head is cut short, the verdict on the
//! bytes so far is `httparse`'s too: an error as soon as a byte rules the
//! head out, else "more", so a head read in pieces meets the same verdict
//! as one read whole.
//!
//! Why not `httparse` itself: its loops take a field value a byte at a
//! time below 32 bytes (its SIMD stride), which is most values, and an
//! upstream's answer of five short fields cost ~1,350 instructions to
//! parse (benches/instructions.sh). Here a value or a target is checked
//! a word at a time. The agreement is tested against `httparse` case by case
//! (`tests` below, over mutated heads) and by the `h1_response` fuzz
//! target, byte for byte.

/// Why a head was ruled out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Not a head as the rules above write it.
    Malformed,
    /// A field line past the most allowed (once that line is whole, as
    /// `httparse` says `TooManyHeaders`).
    TooMany,
}

/// A response's status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Three digits, any of them (`000` too: the caller judges).
    pub code: u16,
    /// Where the reason phrase sits; empty where there was none, or where
    /// it held bytes past ASCII (`httparse` gives `""` then too).
    pub reason: (usize, usize),
}

/// Scans the response head at the front of `buf`: `Ok(None)` while it is
/// incomplete, else its status line and its length, the field lines'
/// spans (`[name start, name end, value start, value end]`) in `spans`,
/// at most `max` of them.
pub fn response(
    buf: &[u8],
    max: usize,
    spans: &mut Vec<[usize; 4]>,
) -> Result<Option<(Status, usize)>, Error> {
    spans.clear();
    let Some((status, at)) = status_line(buf)? else {
        return Ok(None);
    };
    Ok(fields(buf, at, max, spans)?.map(|end| (status, end)))
}

/// A request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine {
    /// Where the method (a token) and the target sit.
    pub method: (usize, usize),
    /// Bytes `!` to `~` and past ASCII, valid UTF-8, at least one.
    pub target: (usize, usize),
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
}

/// Scans the request head at the front of `buf`, as [`response`] does a
/// response's.
pub fn request(
    buf: &[u8],
    max: usize,
    spans: &mut Vec<[usize; 4]>,
) -> Result<Option<(RequestLine, usize)>, Error> {
    spans.clear();
    let Some((line, at)) = request_line(buf)? else {
        return Ok(None);
    };
    Ok(fields(buf, at, max, spans)?.map(|end| (line, end)))
}

/// The request line, and where the field lines start.
fn request_line(buf: &[u8]) -> Result<Option<(RequestLine, usize)>, Error> {
    let Some(m0) = skip_blank_lines(buf)? else {
        return Ok(None);
    };
    let i = token_end(buf, m0);
    match buf.get(i) {
        None => return Ok(None),
        Some(b' ') if i > m0 => {}
        Some(_) => return Err(Error::Malformed),
    }
    let m1 = i;
    let t0 = i + 1;
    let t1 = target_end(buf, t0);
    match buf.get(t1) {
        None => return Ok(None),
        Some(b' ') if t1 > t0 => {}
        Some(_) => return Err(Error::Malformed),
    }
    let target = &buf[t0..t1];
    if !target.is_ascii() && std::str::from_utf8(target).is_err() {
        return Err(Error::Malformed);
    }
    let Some((minor, end)) = version(buf, t1 + 1)? else {
        return Ok(None);
    };
    let Some(next) = line_end(buf, end)? else {
        return Ok(None);
    };
    let line = RequestLine {
        method: (m0, m1),
        target: (t0, t1),
        minor,
    };
    Ok(Some((line, next)))
}

/// `HTTP/1.0` or `HTTP/1.1` at `i`: its minor digit and where it ends.
fn version(buf: &[u8], i: usize) -> Result<Option<(u8, usize)>, Error> {
    match buf.get(i..i + 8) {
        Some(b"HTTP/1.0") => Ok(Some((0, i + 8))),
        Some(b"HTTP/1.1") => Ok(Some((1, i + 8))),
        Some(_) => Err(Error::Malformed),
        None if b"HTTP/1.".starts_with(&buf[i..buf.len().min(i + 7)]) => Ok(None),
        None => Err(Error::Malformed),
    }
}

/// The status line, and where the field lines start.
fn status_line(buf: &[u8]) -> Result<Option<(Status, usize)>, Error> {
    let Some(mut i) = skip_blank_lines(buf)? else {
        return Ok(None);
    };
    let Some((minor, end)) = version(buf, i)? else {
        return Ok(None);
    };
    i = end;
    match buf.get(i) {
        None => return Ok(None),
        Some(b' ') => i += 1,
        Some(_) => return Err(Error::Malformed),
    }
    let mut code = 0u16;
    for _ in 0..3 {
        match buf.get(i) {
            None => return Ok(None),
            Some(d @ b'0'..=b'9') => code = code * 10 + u16::from(d - b'0'),
            Some(_) => return Err(Error::Malformed),
        }
        i += 1;
    }
    let (reason, next) = match buf.get(i) {
        None => return Ok(None),
        Some(b' ') => {
            let start = i + 1;
            let end = text_end(buf, start);
            let Some(next) = line_end(buf, end)? else {
                return Ok(None);
            };
            let ascii = buf[start..end].is_ascii();
            ((start, if ascii { end } else { start }), next)
        }
        Some(b'\r' | b'\n') => match line_end(buf, i)? {
            Some(next) => ((i, i), next),
            None => return Ok(None),
        },
        Some(_) => return Err(Error::Malformed),
    };
    Ok(Some((
        Status {
            minor,
            code,
            reason,
        },
        next,
    )))
}

/// Past the empty lines (CRLF or LF) at the front of `buf`: where the
/// first other byte sits.
fn skip_blank_lines(buf: &[u8]) -> Result<Option<usize>, Error> {
    let mut i = 0;
    loop {
        match buf.get(i) {
            None => return Ok(None),
            Some(b'\n') => i += 1,
            Some(b'\r') => match buf.get(i + 1) {
                None => return Ok(None),
                Some(b'\n') => i += 2,
                Some(_) => return Err(Error::Malformed),
            },
            Some(_) => return Ok(Some(i)),
        }
    }
}

/// The field lines from `at` through the blank line that ends them: where
/// the head ends.
fn fields(
    buf: &[u8],
    mut i: usize,
    max: usize,
    spans: &mut Vec<[usize; 4]>,
) -> Result<Option<usize>, Error> {
    loop {
        match buf.get(i) {
            None => return Ok(None),
            Some(b'\r' | b'\n') => return line_end(buf, i),
            Some(_) => {}
        }
        let n0 = i;
        i = token_end(buf, i);
        match buf.get(i) {
            None => return Ok(None),
            Some(b':') if i > n0 => {}
            Some(_) => return Err(Error::Malformed),
        }
        let n1 = i;
        i += 1;
        while matches!(buf.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        let v0 = i;
        let end = text_end(buf, v0);
        let Some(next) = line_end(buf, end)? else {
            return Ok(None);
        };
        let mut v1 = end;
        while v1 > v0 && matches!(buf[v1 - 1], b' ' | b'\t') {
            v1 -= 1;
        }
        if spans.len() == max {
            return Err(Error::TooMany);
        }
        spans.push([n0, n1, v0, v1]);
        i = next;
    }
}

/// At `i`, a line's end (CRLF or LF): where the next line starts.
/// Anything else there is a byte no line may hold.
fn line_end(buf: &[u8], i: usize) -> Result<Option<usize>, Error> {
    match buf.get(i) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(i + 1)),
        Some(b'\r') => match buf.get(i + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some(i + 2)),
            Some(_) => Err(Error::Malformed),
        },
        Some(_) => Err(Error::Malformed),
    }
}

/// The first byte from `i` on that a field value (or a reason phrase) may
/// not hold: a control byte other than tab, or DEL; `buf.len()` if none.
/// A word at a time where eight bytes remain.
fn text_end(buf: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = buf.get(i..i + 8) {
        let w = word(chunk);
        // Below 0x20 or DEL, tab included: a byte's low seven bits plus
        // one (DEL's become zero) then plus 0x5f stay under 0x80, and its
        // own top bit is clear. No sum leaves its byte.
        let low = ((w & !HIGH) + ONES) & !HIGH;
        let flagged = !((low + ONES * 0x5f) | w) & HIGH;
        if flagged != 0 {
            let at = i + (flagged.trailing_zeros() / 8) as usize;
            // A tab (rare in a value) is allowed: on from it a byte at a
            // time.
            if buf[at] != b'\t' {
                return at;
            }
            i = at + 1;
            break;
        }
        i += 8;
    }
    i + buf[i.min(buf.len())..]
        .iter()
        .position(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        .unwrap_or(buf.len().saturating_sub(i))
}

/// The first byte from `i` on that is not a token's.
fn token_end(buf: &[u8], i: usize) -> usize {
    let rest = &buf[i.min(buf.len())..];
    i + rest
        .iter()
        .position(|&b| !TOKEN[usize::from(b)])
        .unwrap_or(rest.len())
}

/// The first byte from `i` on that a request target may not hold (below
/// `!`, or DEL); `buf.len()` if none.
fn target_end(buf: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = buf.get(i..i + 8) {
        let w = word(chunk);
        // Below 0x21: the low seven bits plus 0x5f stay under 0x80.
        let bad = !(((w & !HIGH) + ONES * 0x5f) | w) & HIGH | zero(w ^ (ONES * 0x7f));
        if bad != 0 {
            return i + (bad.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + buf[i.min(buf.len())..]
        .iter()
        .position(|&b| b < 0x21 || b == 0x7f)
        .unwrap_or(buf.len().saturating_sub(i))
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Eight bytes as a word, the first one lowest.
fn word(chunk: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(chunk);
    u64::from_le_bytes(w)
}

/// The top bit of each byte of `w` that is zero. Exact: no sum leaves its
/// byte, so no byte's verdict reaches another's.
fn zero(w: u64) -> u64 {
    !(((w & !HIGH) + !HIGH) | w) & HIGH
}

/// A token's bytes (RFC 9110 §5.6.2), as `httparse` and `http` have them.
static TOKEN: [bool; 256] = {
    let mut map = [false; 256];
    let mut b = 0;
    while b < 256 {
        map[b] = matches!(b as u8,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9'
            | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
            | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~');
        b += 1;
    }
    map
};

#[cfg(test)]
mod tests;
