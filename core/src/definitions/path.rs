//! Document paths for error messages, e.g. `tests."foo/linux".dependencies.src`: a cheap
//! linked list of segments built while walking, formatted only when an error is reported.

/// One step from a parent node into a child.
#[derive(Clone, Copy, Debug)]
pub enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// A path from the document root; `Root` has no segments.
#[derive(Clone, Copy, Debug)]
pub enum DocPath<'a> {
    Root,
    Child(&'a DocPath<'a>, Segment<'a>),
}

impl<'a> DocPath<'a> {
    pub fn key(&'a self, key: &'a str) -> DocPath<'a> {
        DocPath::Child(self, Segment::Key(key))
    }

    pub fn index(&'a self, index: usize) -> DocPath<'a> {
        DocPath::Child(self, Segment::Index(index))
    }

    /// Format as `a.b."c/d"[3]`.
    pub fn render(&self) -> String {
        let mut segments = Vec::new();
        let mut current = self;
        while let DocPath::Child(parent, segment) = current {
            segments.push(*segment);
            current = parent;
        }
        let mut out = String::with_capacity(64);
        for segment in segments.iter().rev() {
            match segment {
                Segment::Key(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    push_key(&mut out, key);
                }
                Segment::Index(i) => {
                    use std::fmt::Write;
                    let _ = write!(out, "[{i}]");
                }
            }
        }
        out
    }
}

/// Append `key`, quoted unless it is a plain identifier-like word.
fn push_key(out: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    if plain {
        out.push_str(key);
    } else {
        use std::fmt::Write;
        let _ = write!(out, "{key:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_quoted_segments() {
        let root = DocPath::Root;
        let tests = root.key("tests");
        let item = tests.key("foo/linux");
        let deps = item.key("dependencies");
        let src = deps.key("src");
        assert_eq!(src.render(), "tests.\"foo/linux\".dependencies.src");
        let idx = deps.index(2);
        assert_eq!(idx.render(), "tests.\"foo/linux\".dependencies[2]");
    }
}
