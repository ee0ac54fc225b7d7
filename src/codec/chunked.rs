//! A client's chunked request body decoded (RFC 9112 §7.1) with hyper
//! 1.12's server rules (`proto/h1/decode.rs`), which are stricter than the
//! upstream client's decoder (`upstream::h1::body::Chunked`, lenient as
//! a client may be): every line ends in CRLF, never a bare LF; a chunk
//! extension may not hold a bare LF and all of a body's extensions are at
//! most 16 KiB; trailers are at most [`MAX_TRAILER_LINES`] lines and
//! [`MAX_TRAILER_BYTES`] bytes. A client's bytes reach figway's upstreams
//! only re-framed, but where a body ends is where the next request on the
//! connection begins: reading it exactly as hyper does keeps every
//! request boundary where it was (`tests/codec_differential.rs` holds the
//! two to the same reading).

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

/// All of a body's chunk extensions together (hyper's limit).
pub const MAX_EXTENSIONS: u64 = 16 * 1024;
/// Trailer section bytes (hyper's default).
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Trailer lines (hyper's default header count).
pub const MAX_TRAILER_LINES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first hex digit of a size line.
    Start,
    Size,
    SizeSpace,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// After the last chunk's line: CRLF, or a trailer line.
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
    Done,
}

/// What the decoder made of the bytes at hand.
#[derive(Debug, PartialEq)]
pub enum Step {
    Data(Bytes),
    /// The body ended, with its trailers if it had any.
    End(Option<HeaderMap>),
    /// Nothing yet: read more.
    More,
}

/// Why a chunked body cannot be read on (the connection then closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// The decoder's state between reads.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    size: u64,
    extensions: u64,
    trailers: Option<BytesMut>,
    trailer_lines: usize,
    /// Once malformed, always: the bad byte is consumed, and decoding on
    /// from the next one could find a chunk boundary the client never
    /// meant.
    failed: Option<Malformed>,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder {
            state: State::Start,
            size: 0,
            extensions: 0,
            trailers: None,
            trailer_lines: 0,
            failed: None,
        }
    }
}

impl Decoder {
    /// Decodes what it can off the front of `buf`; data comes back as
    /// slices of it, never copied.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, Malformed> {
        if let Some(why) = self.failed {
            return Err(why);
        }
        let step = self.step(buf);
        if let Err(why) = step {
            self.failed = Some(why);
        }
        step
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Step, Malformed> {
        loop {
            if self.state == State::Done {
                return Ok(Step::End(None));
            }
            if self.state == State::Data {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let n = self.size.min(buf.len() as u64);
                self.size -= n;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                return Ok(Step::Data(buf.split_to(n as usize).freeze()));
            }
            let Some(&byte) = buf.first() else {
                return Ok(Step::More);
            };
            buf.advance(1);
            if let Some(end) = self.byte(byte)? {
                return Ok(end);
            }
        }
    }

    /// One byte of a line; `Some` when it ends the body.
    fn byte(&mut self, b: u8) -> Result<Option<Step>, Malformed> {
        self.state = match (self.state, b) {
            (State::Start | State::Size, _) if b.is_ascii_hexdigit() => {
                let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(digit))
                    .ok_or(Malformed("chunk size overflow"))?;
                State::Size
            }
            (State::Start, _) => return Err(Malformed("missing chunk size digit")),
            (State::Size | State::SizeSpace, b'\t' | b' ') => State::SizeSpace,
            (State::Size | State::SizeSpace, b';') => State::Extension,
            (State::Size | State::SizeSpace | State::Extension, b'\r') => State::SizeLf,
            (State::Size | State::SizeSpace, _) => return Err(Malformed("bad chunk size line")),
            (State::Extension, b'\n') => return Err(Malformed("bare LF in a chunk extension")),
            (State::Extension, _) => {
                self.extensions += 1;
                if self.extensions >= MAX_EXTENSIONS {
                    return Err(Malformed("chunk extensions over the limit"));
                }
                State::Extension
            }
            (State::SizeLf, b'\n') if self.size == 0 => State::EndCr,
            (State::SizeLf, b'\n') => State::Data,
            (State::SizeLf, _) => return Err(Malformed("chunk size line without CRLF")),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Start,
            (State::DataCr | State::DataLf, _) => {
                return Err(Malformed("chunk data not followed by CRLF"))
            }
            (State::EndCr, b'\r') => {
                self.trailer_byte(b)?;
                State::EndLf
            }
            (State::EndCr, _) => {
                self.trailers
                    .get_or_insert_with(|| BytesMut::with_capacity(64));
                self.trailer_byte(b)?;
                State::Trailer
            }
            (State::EndLf, b'\n') => {
                self.trailer_byte(b)?;
                self.state = State::Done;
                return self.finish().map(|t| Some(Step::End(t)));
            }
            (State::EndLf, _) => return Err(Malformed("last chunk not ended by CRLF")),
            (State::Trailer, _) => {
                self.trailer_byte(b)?;
                if b == b'\r' {
                    State::TrailerLf
                } else {
                    State::Trailer
                }
            }
            (State::TrailerLf, b'\n') => {
                if self.trailer_lines >= MAX_TRAILER_LINES {
                    return Err(Malformed("too many trailer lines"));
                }
                self.trailer_lines += 1;
                self.trailer_byte(b)?;
                State::EndCr
            }
            (State::TrailerLf, _) => return Err(Malformed("trailer line without CRLF")),
            (State::Data | State::Done, _) => self.state,
        };
        Ok(None)
    }

    fn trailer_byte(&mut self, b: u8) -> Result<(), Malformed> {
        if let Some(t) = self.trailers.as_mut() {
            t.extend_from_slice(&[b]);
            if t.len() >= MAX_TRAILER_BYTES {
                return Err(Malformed("trailers over the limit"));
            }
        }
        Ok(())
    }

    /// The trailer section, parsed as hyper parses it.
    fn finish(&mut self) -> Result<Option<HeaderMap>, Malformed> {
        let Some(section) = self.trailers.take() else {
            return Ok(None);
        };
        let mut slots = vec![httparse::EMPTY_HEADER; self.trailer_lines];
        let parsed = match httparse::parse_headers(&section, &mut slots) {
            Ok(httparse::Status::Complete((_, parsed))) => parsed,
            _ => return Err(Malformed("bad trailer section")),
        };
        let mut map = HeaderMap::with_capacity(parsed.len());
        for h in parsed.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| Malformed("bad trailer name"))?;
            let value =
                HeaderValue::from_bytes(h.value).map_err(|_| Malformed("bad trailer value"))?;
            map.append(name, value);
        }
        Ok(Some(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `bytes` fed whole and byte by byte; both must agree.
    fn read(bytes: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>, usize), Malformed> {
        let whole = run(&[bytes]);
        let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(
            run(&pieces),
            whole,
            "byte by byte: {:?}",
            String::from_utf8_lossy(bytes)
        );
        whole
    }

    /// The data, the trailers, and the bytes left after the end.
    fn run(pieces: &[&[u8]]) -> Result<(Vec<u8>, Option<HeaderMap>, usize), Malformed> {
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        let mut d = Decoder::default();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut fed = 0;
        for piece in pieces {
            buf.extend_from_slice(piece);
            fed += piece.len();
            loop {
                match d.decode(&mut buf)? {
                    Step::Data(b) => data.extend_from_slice(&b),
                    Step::More => break,
                    Step::End(t) => return Ok((data, t, total - (fed - buf.len()))),
                }
            }
        }
        Err(Malformed("incomplete"))
    }

    #[test]
    fn chunks_extensions_and_trailers() {
        let (data, trailers, rest) =
            read(b"5;ext=1\r\nhello\r\n6 \t;x\r\n world\r\n0\r\nX-Sum: 1\r\nX-Sum: 2\r\n\r\nNEXT")
                .unwrap();
        assert_eq!(data, b"hello world");
        let trailers = trailers.unwrap();
        assert_eq!(trailers.get_all("x-sum").iter().count(), 2);
        assert_eq!(rest, 4);
        let (data, trailers, rest) = read(b"0\r\n\r\n").unwrap();
        assert!(data.is_empty() && trailers.is_none() && rest == 0);
        assert_eq!(
            read(b"00000A\r\n0123456789\r\n0\r\n\r\n").unwrap().0.len(),
            10
        );
    }

    #[test]
    fn what_hyper_refuses_is_refused() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"x\r\n",
            b"\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"-1\r\n",
            b"10000000000000000\r\n",
            b"0\r\n\n",
            b"0\r\nX: 1\n\r\n",
            b"0\r\nX: 1\r\n\rx",
        ] {
            assert!(read(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// Found by review: after an error the decoder went on from the next
    /// byte and could read `0\r\n\r\n` further on as a clean end.
    #[test]
    fn an_error_is_final() {
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&b"5\r\nhelloX\r\n0\r\n\r\n"[..]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Step::Data(Bytes::from_static(b"hello")))
        );
        assert!(d.decode(&mut buf).is_err());
        for _ in 0..4 {
            assert!(d.decode(&mut buf).is_err());
        }
    }

    #[test]
    fn limits() {
        let long_ext = format!(
            "1;{}\r\na\r\n0\r\n\r\n",
            "e".repeat(MAX_EXTENSIONS as usize)
        );
        assert_eq!(
            read(long_ext.as_bytes()).unwrap_err(),
            Malformed("chunk extensions over the limit")
        );
        let many: String = (0..=MAX_TRAILER_LINES)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect();
        let too_many = format!("0\r\n{many}\r\n");
        assert_eq!(
            read(too_many.as_bytes()).unwrap_err(),
            Malformed("too many trailer lines")
        );
        let big = format!("0\r\nX: {}\r\n\r\n", "v".repeat(MAX_TRAILER_BYTES));
        assert_eq!(
            read(big.as_bytes()).unwrap_err(),
            Malformed("trailers over the limit")
        );
    }
}
