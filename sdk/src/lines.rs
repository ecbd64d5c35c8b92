//! Splitting the NDJSON event stream into lines.

/// What [`LineSplitter::push`] found in a chunk.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// One complete line, without its `\n` (a trailing `\r` is kept; the
    /// JSON parser ignores it as whitespace).
    Complete(Vec<u8>),
    /// A line longer than the limit was dropped.
    TooLong,
}

/// Accumulates bytes from a stream and hands out complete lines. A line
/// longer than `max_len` is discarded up to its newline, so a misbehaving
/// peer cannot make the buffer grow without bound.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
    max_len: usize,
    discarding: bool,
}

impl LineSplitter {
    pub(crate) fn new(max_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_len,
            discarding: false,
        }
    }

    /// Feeds one chunk; returns the lines it completed, in order.
    pub(crate) fn push(&mut self, mut chunk: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let (head, rest) = chunk.split_at(i);
                    chunk = &rest[1..];
                    if self.discarding || self.buf.len() + head.len() > self.max_len {
                        self.discarding = false;
                        self.buf.clear();
                        out.push(Line::TooLong);
                    } else {
                        self.buf.extend_from_slice(head);
                        out.push(Line::Complete(std::mem::take(&mut self.buf)));
                    }
                }
                None => {
                    if !self.discarding {
                        if self.buf.len() + chunk.len() > self.max_len {
                            self.discarding = true;
                            self.buf.clear();
                        } else {
                            self.buf.extend_from_slice(chunk);
                        }
                    }
                    chunk = &[];
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(s: &str) -> Line {
        Line::Complete(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut s = LineSplitter::new(100);
        assert_eq!(s.push(b"{\"a\":"), vec![]);
        assert_eq!(s.push(b"1}\n{\"b\""), vec![complete("{\"a\":1}")]);
        assert_eq!(
            s.push(b":2}\n\n"),
            vec![complete("{\"b\":2}"), complete("")]
        );
    }

    #[test]
    fn several_lines_in_one_chunk() {
        let mut s = LineSplitter::new(100);
        assert_eq!(s.push(b"x\ny\r\nz"), vec![complete("x"), complete("y\r")]);
        assert_eq!(s.push(b"\n"), vec![complete("z")]);
    }

    #[test]
    fn overlong_lines_are_dropped_and_the_next_line_survives() {
        let mut s = LineSplitter::new(4);
        assert_eq!(s.push(b"abc"), vec![]);
        assert_eq!(s.push(b"defgh"), vec![]);
        assert_eq!(s.push(b"ij\nok\n"), vec![Line::TooLong, complete("ok")]);
        // Overlong within a single chunk.
        assert_eq!(
            s.push(b"0123456789\nab\n"),
            vec![Line::TooLong, complete("ab")]
        );
        // Exactly at the limit is fine.
        assert_eq!(s.push(b"abcd\n"), vec![complete("abcd")]);
    }
}
