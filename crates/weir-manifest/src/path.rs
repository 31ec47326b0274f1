//! Field paths inside a document (`spec.ingress[0].from[1].ipBlock.cidr`), the
//! common key between decoding errors, validation errors and source locations.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.to_string()));
        p
    }

    pub fn index(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Index(index));
        p
    }

    /// Prefixes `outer` (e.g. `items[3]` of a List) to this path.
    pub fn within(&self, outer: &FieldPath) -> Self {
        let mut p = outer.clone();
        p.0.extend(self.0.iter().cloned());
        p
    }

    /// The longest prefix of this path, then shorter ones: where to look for a location
    /// when the exact field is absent (a missing required field points at its parent).
    pub fn prefixes(&self) -> impl Iterator<Item = FieldPath> + '_ {
        (0..=self.0.len())
            .rev()
            .map(|n| FieldPath(self.0[..n].to_vec()))
    }

    pub(crate) fn from_path_to_error(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment as S;
        FieldPath(
            path.iter()
                .filter_map(|s| match s {
                    S::Seq { index } => Some(Segment::Index(*index)),
                    S::Map { key } => Some(Segment::Key(key.clone())),
                    S::Enum { variant } => Some(Segment::Key(variant.clone())),
                    S::Unknown => None,
                })
                .collect(),
        )
    }

    pub(crate) fn from_ignored(path: &serde_ignored::Path<'_>) -> Self {
        use serde_ignored::Path as P;
        fn walk(p: &P<'_>, out: &mut Vec<Segment>) {
            match p {
                P::Root => {}
                P::Seq { parent, index } => {
                    walk(parent, out);
                    out.push(Segment::Index(*index));
                }
                P::Map { parent, key } => {
                    walk(parent, out);
                    out.push(Segment::Key(key.clone()));
                }
                P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                    walk(parent, out)
                }
            }
        }
        let mut out = Vec::new();
        walk(path, &mut out);
        FieldPath(out)
    }
}

impl FieldPath {
    /// Reads a path as [`fmt::Display`] writes it (`spec.ingress[1].from[0]`,
    /// `metadata.annotations["weir.dev/mode"]`); `None` for anything else.
    pub fn parse(text: &str) -> Option<FieldPath> {
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        let mut out = Vec::new();
        let mut rest = text;
        loop {
            if let Some(r) = rest.strip_prefix("[\"") {
                // A quoted key as `{:?}` writes it; keys of manifests need no escape but
                // these two.
                let mut key = String::new();
                let mut chars = r.char_indices();
                let end = loop {
                    match chars.next()? {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next()?.1 {
                            c @ ('"' | '\\') => key.push(c),
                            _ => return None,
                        },
                        (_, c) => key.push(c),
                    }
                };
                rest = r[end + 1..].strip_prefix(']')?;
                out.push(Segment::Key(key));
            } else if let Some(r) = rest.strip_prefix('[') {
                let (n, after) = r.split_once(']')?;
                out.push(Segment::Index(n.parse().ok()?));
                rest = after;
            } else {
                let r = if out.is_empty() {
                    rest
                } else {
                    rest.strip_prefix('.')?
                };
                let len = r.find(|c: char| !plain(c)).unwrap_or(r.len());
                if len == 0 {
                    return None;
                }
                out.push(Segment::Key(r[..len].to_string()));
                rest = &r[len..];
            }
            if rest.is_empty() {
                return Some(FieldPath(out));
            }
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(k) => {
                    let plain = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if plain {
                        if i > 0 {
                            f.write_str(".")?;
                        }
                        f.write_str(k)?;
                    } else {
                        write!(f, "[{k:?}]")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_label_keys() {
        let p = FieldPath::root()
            .key("metadata")
            .key("labels")
            .key("networking/logic");
        assert_eq!(p.to_string(), r#"metadata.labels["networking/logic"]"#);
        let p = FieldPath::root()
            .key("spec")
            .key("ingress")
            .index(0)
            .key("from");
        assert_eq!(p.to_string(), "spec.ingress[0].from");
    }

    #[test]
    fn parse_reads_what_display_writes() {
        for p in [
            FieldPath::root()
                .key("spec")
                .key("ingress")
                .index(1)
                .key("from")
                .index(0),
            FieldPath::root()
                .key("metadata")
                .key("annotations")
                .key("weir.dev/mode"),
            FieldPath::root()
                .key("metadata")
                .key("labels")
                .key("a\"b\\c"),
        ] {
            assert_eq!(FieldPath::parse(&p.to_string()), Some(p.clone()), "{p}");
        }
        for bad in ["", ".a", "a.", "a[", "a[x]", "a[\"b]", "a b", "a[\"b\\n\"]"] {
            assert_eq!(FieldPath::parse(bad), None, "{bad:?}");
        }
    }
}
