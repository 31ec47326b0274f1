//! Text → documents. YAML (multi-document, anchors, merge keys) through the
//! saphyr event parser; JSON through serde_json, which is much faster on large
//! `kubectl get -o json` dumps. Source positions are recorded only when asked
//! (after an error), so the happy path pays nothing for them.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use crate::path::{FieldPath, Segment};

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub col: usize,
}

/// A document's content: a tree (YAML), or the JSON text itself, decoded later
/// straight into typed objects without an intermediate tree.
#[derive(Debug)]
pub enum Body<'a> {
    Tree(Value),
    Json(&'a RawValue),
}

/// One document of a stream, with where it starts.
#[derive(Debug)]
pub struct Document<'a> {
    pub body: Body<'a>,
    pub start: Position,
    /// Byte offset of the document in its text, for locating fields later.
    pub offset: usize,
}

/// Byte offset → line and column, without rescanning the text each time.
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { starts }
    }

    /// The byte offset of a 1-based line and column, if the text has it.
    pub fn offset(&self, line: usize, col: usize) -> Option<usize> {
        self.starts
            .get(line.checked_sub(1)?)
            .map(|s| s + col.saturating_sub(1))
    }

    pub fn position(&self, offset: usize) -> Position {
        let line = self.starts.partition_point(|&s| s <= offset);
        Position {
            line,
            col: offset - self.starts[line - 1] + 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub message: String,
    pub at: Position,
}

/// A `---` line: the text is a YAML stream of several documents.
fn has_document_marker(text: &str) -> bool {
    text.lines().any(|l| l == "---" || l.starts_with("--- "))
}

fn looks_like_json(text: &str) -> bool {
    matches!(
        text.trim_start().as_bytes().first(),
        Some(b'{') | Some(b'[')
    )
}

/// Deepest nesting of mappings and sequences a document may have: far beyond any
/// Kubernetes object, and shallow enough that nothing recursive can exhaust the stack.
pub const MAX_DEPTH: usize = 128;
/// Nodes that aliases may add to a text by expansion, beyond [`ALIAS_RATIO`] times the
/// nodes written out: bounds "billion laughs" in time and memory (the Go YAML decoder the
/// API server's clients use applies a similar ratio).
pub const MAX_ALIAS_NODES: usize = 100_000;
pub const ALIAS_RATIO: usize = 10;

/// Splits a text into documents. A text that starts like JSON is read as a JSON stream;
/// when it is not one but has YAML document markers (a JSON document, `---`, more YAML),
/// as YAML. A broken JSON text keeps its JSON error.
pub fn parse_documents(text: &str) -> Result<Vec<Document<'_>>, SyntaxError> {
    if looks_like_json(text) {
        return match parse_json(text) {
            Ok(docs) => Ok(docs),
            Err(json_error) if has_document_marker(text) => {
                Builder::new(text, None).documents().map_err(|_| json_error)
            }
            Err(json_error) => Err(json_error),
        };
    }
    let mut builder = Builder::new(text, None);
    builder.documents()
}

/// Where `field` (`spec.ingress[1].from[0]`) of the object that starts at `line`:`col` of
/// `text` sits: its key, or the nearest enclosing field's inside the object. `None` when it
/// cannot be told: the object is not there, or is one item of a YAML `List` (its items share
/// the list's start).
pub fn locate_field(text: &str, line: usize, col: usize, field: &str) -> Option<Position> {
    FieldIndex::new(text.to_string()).locate(line, col, field)
}

/// One file indexed once (its lines, where its documents start) for many
/// [`locate_field`] lookups: explaining every connection names thousands of rules of one
/// large file.
pub struct FieldIndex {
    text: String,
    lines: LineIndex,
    /// (line, col) of each document's start → its byte offset; `None` if not parsable.
    docs: Option<HashMap<(usize, usize), usize>>,
}

impl FieldIndex {
    pub fn new(text: String) -> FieldIndex {
        let lines = LineIndex::new(&text);
        let docs = parse_documents(&text).ok().map(|docs| {
            docs.iter()
                .map(|d| ((d.start.line, d.start.col), d.offset))
                .collect()
        });
        FieldIndex { text, lines, docs }
    }

    /// [`locate_field`] in this file.
    pub fn locate(&self, line: usize, col: usize, field: &str) -> Option<Position> {
        let path = FieldPath::parse(field)?;
        let text = self.text.as_str();
        let offset = match self.docs.as_ref()?.get(&(line, col)) {
            Some(&offset) => offset,
            None => self.lines.offset(line, col).filter(|&o| o < text.len())?, // a JSON List's item
        };
        let positions = locate_fields(text, offset, &self.lines);
        if positions.contains_key(&FieldPath::root().key("items").index(0)) {
            return None;
        }
        let found = path
            .prefixes()
            .take(path.0.len())
            .find_map(|p| positions.get(&p).copied());
        found
    }
}

/// Where each field of the document at `offset` sits in `text`.
pub fn locate_fields(text: &str, offset: usize, lines: &LineIndex) -> HashMap<FieldPath, Position> {
    let mut positions = HashMap::new();
    let tail = &text[offset..];
    let base = lines.position(offset);
    // A JSON document is also a YAML flow document; parse just this one.
    let slice = if looks_like_json(text) {
        json_document_slice(tail)
    } else {
        tail
    };
    let mut builder = Builder::new(slice, Some(&mut positions));
    let _ = builder.document();
    for p in positions.values_mut() {
        if p.line == 1 {
            p.col += base.col - 1;
        }
        p.line += base.line - 1;
    }
    positions
}

fn json_document_slice(tail: &str) -> &str {
    let mut stream = serde_json::Deserializer::from_str(tail).into_iter::<serde::de::IgnoredAny>();
    match stream.next() {
        Some(Ok(_)) => &tail[..stream.byte_offset()],
        _ => tail,
    }
}

/// Where `part` (a slice of `text`) starts in `text`.
pub fn offset_in(text: &str, part: &str) -> usize {
    (part.as_ptr() as usize)
        .saturating_sub(text.as_ptr() as usize)
        .min(text.len())
}

fn parse_json(text: &str) -> Result<Vec<Document<'_>>, SyntaxError> {
    let mut docs = Vec::new();
    let lines = LineIndex::new(text);
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    loop {
        match stream.next() {
            None => break,
            Some(Ok(raw)) => {
                let offset = offset_in(text, raw.get());
                docs.push(Document {
                    body: Body::Json(raw),
                    start: lines.position(offset),
                    offset,
                })
            }
            Some(Err(e)) => {
                // serde_json appends " at line L column C"; the position is reported apart.
                let text = e.to_string();
                let message = text
                    .rfind(" at line ")
                    .map_or(text.as_str(), |i| &text[..i]);
                return Err(SyntaxError {
                    message: format!("invalid JSON: {message}"),
                    // serde_json counts columns from 1, except 0 at the start of a line.
                    at: Position {
                        line: e.line().max(1),
                        col: e.column().max(1),
                    },
                });
            }
        }
    }
    Ok(docs)
}

struct Builder<'a, 'r> {
    text: &'a str,
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Value>,
    record: Option<&'r mut HashMap<FieldPath, Position>>,
    path: Vec<Segment>,
    /// Saphyr reports character indices; byte offsets are needed to slice the text.
    ascii: bool,
    /// The last (character index, byte offset) converted: offsets are asked in increasing
    /// order, so converting costs the distance walked, not the distance from the start.
    cursor: (usize, usize),
    /// Characters walked converting offsets (a test checks it stays linear).
    steps: usize,
    depth: usize,
    /// Nodes written out in the text, and nodes added by expanding aliases.
    nodes: usize,
    alias_nodes: usize,
    /// Node count of each anchored value.
    anchor_sizes: HashMap<usize, usize>,
}

fn pos(span: &Span) -> Position {
    Position {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

fn scan_error(e: ScanError) -> SyntaxError {
    SyntaxError {
        message: format!("invalid YAML: {}", e.info()),
        at: Position {
            line: e.marker().line(),
            col: e.marker().col() + 1,
        },
    }
}

impl<'a, 'r> Builder<'a, 'r> {
    fn new(text: &'a str, record: Option<&'r mut HashMap<FieldPath, Position>>) -> Self {
        Builder {
            text,
            parser: Parser::new_from_str(text),
            anchors: HashMap::new(),
            record,
            path: Vec::new(),
            ascii: text.is_ascii(),
            cursor: (0, 0),
            steps: 0,
            depth: 0,
            nodes: 0,
            alias_nodes: 0,
            anchor_sizes: HashMap::new(),
        }
    }

    fn next(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(scan_error(e)),
            None => Err(SyntaxError {
                message: "unexpected end of input".into(),
                at: LineIndex::new(self.text).position(self.text.len()),
            }),
        }
    }

    fn byte_offset(&mut self, span: &Span) -> usize {
        let chars = span.start.index();
        if self.ascii {
            return chars;
        }
        let (mut at_char, mut at_byte) = if chars >= self.cursor.0 {
            self.cursor
        } else {
            (0, 0)
        };
        let mut rest = self.text[at_byte..].chars();
        while at_char < chars {
            match rest.next() {
                Some(c) => {
                    at_byte += c.len_utf8();
                    at_char += 1;
                    self.steps += 1;
                }
                None => break,
            }
        }
        self.cursor = (at_char, at_byte);
        at_byte
    }

    fn documents(&mut self) -> Result<Vec<Document<'a>>, SyntaxError> {
        let mut docs = Vec::new();
        while let Some(doc) = self.document()? {
            // An empty document (`---` followed by nothing) is not an object.
            if !matches!(doc.body, Body::Tree(Value::Null)) {
                docs.push(doc);
            }
        }
        Ok(docs)
    }

    fn document(&mut self) -> Result<Option<Document<'a>>, SyntaxError> {
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::StreamStart | Event::Nothing | Event::DocumentEnd => continue,
                Event::StreamEnd => return Ok(None),
                Event::DocumentStart(_) => {
                    self.anchors.clear();
                    self.anchor_sizes.clear();
                    let (ev, vspan) = self.next()?;
                    let offset = self.byte_offset(&vspan);
                    let value = self.node(ev, vspan)?;
                    return Ok(Some(Document {
                        body: Body::Tree(value),
                        start: pos(&span),
                        offset,
                    }));
                }
                other => {
                    return Err(SyntaxError {
                        message: format!("unexpected YAML event {other:?}"),
                        at: pos(&span),
                    })
                }
            }
        }
    }

    fn remember(&mut self, at: Position) {
        if let Some(rec) = self.record.as_deref_mut() {
            rec.entry(FieldPath(self.path.clone())).or_insert(at);
        }
    }

    fn node(&mut self, ev: Event<'a>, span: Span) -> Result<Value, SyntaxError> {
        let at = pos(&span);
        self.remember(at);
        let before = self.nodes + self.alias_nodes;
        let nested = matches!(ev, Event::SequenceStart(..) | Event::MappingStart(..));
        if nested {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(SyntaxError {
                    message: format!("nesting deeper than {MAX_DEPTH} levels"),
                    at,
                });
            }
        }
        if !matches!(ev, Event::Alias(_)) {
            self.nodes += 1;
        }
        let anchor = match &ev {
            Event::Scalar(_, _, a, _) | Event::SequenceStart(a, _) | Event::MappingStart(a, _) => {
                *a
            }
            _ => 0,
        };
        let value = self.node_inner(ev, at);
        if nested {
            self.depth -= 1;
        }
        if anchor > 0 {
            let size = self.nodes + self.alias_nodes - before;
            self.anchor_sizes.insert(anchor, size);
        }
        value
    }

    /// Counts an alias's expansion against the budget before copying it.
    fn expand(&mut self, id: usize, at: Position) -> Result<Value, SyntaxError> {
        let size = self.anchor_sizes.get(&id).copied().unwrap_or(1);
        self.alias_nodes = self.alias_nodes.saturating_add(size);
        if self.alias_nodes > MAX_ALIAS_NODES + ALIAS_RATIO * self.nodes {
            return Err(SyntaxError {
                message: format!(
                    "aliases expand to more than {} nodes ({} written out): refusing an alias bomb",
                    MAX_ALIAS_NODES + ALIAS_RATIO * self.nodes,
                    self.nodes
                ),
                at,
            });
        }
        self.anchors.get(&id).cloned().ok_or(SyntaxError {
            message: "alias to an unknown anchor".into(),
            at,
        })
    }

    fn node_inner(&mut self, ev: Event<'a>, at: Position) -> Result<Value, SyntaxError> {
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let v = if style == ScalarStyle::Plain && !is_str_tag {
                    resolve_plain(&text)
                } else {
                    Value::String(text.into_owned())
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, v.clone());
                }
                Ok(v)
            }
            Event::Alias(id) => self.expand(id, at),
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    self.path.push(Segment::Index(items.len()));
                    let item = self.node(ev, span);
                    self.path.pop();
                    items.push(item?);
                }
                let v = Value::Array(items);
                if anchor > 0 {
                    self.anchors.insert(anchor, v.clone());
                }
                Ok(v)
            }
            Event::MappingStart(anchor, _) => {
                let mut map = Map::new();
                let mut merged: Vec<Map<String, Value>> = Vec::new();
                loop {
                    let (kev, kspan) = self.next()?;
                    if matches!(kev, Event::MappingEnd) {
                        break;
                    }
                    let key = match kev {
                        Event::Scalar(k, _, _, _) => k.into_owned(),
                        _ => {
                            return Err(SyntaxError {
                                message: "mapping keys must be plain strings".into(),
                                at: pos(&kspan),
                            })
                        }
                    };
                    if map.contains_key(&key) {
                        return Err(SyntaxError {
                            message: format!("duplicate key {key:?}"),
                            at: pos(&kspan),
                        });
                    }
                    self.path.push(Segment::Key(key.clone()));
                    self.remember(pos(&kspan));
                    let (vev, vspan) = self.next()?;
                    let value = self.node(vev, vspan);
                    self.path.pop();
                    let value = value?;
                    if key == "<<" {
                        match value {
                            Value::Object(m) => merged.push(m),
                            Value::Array(list) => {
                                merged.extend(list.into_iter().filter_map(|v| match v {
                                    Value::Object(m) => Some(m),
                                    _ => None,
                                }))
                            }
                            _ => {
                                return Err(SyntaxError {
                                    message: "merge key `<<` needs a mapping".into(),
                                    at: pos(&kspan),
                                })
                            }
                        }
                    } else {
                        map.insert(key, value);
                    }
                }
                for m in merged {
                    for (k, v) in m {
                        map.entry(k).or_insert(v);
                    }
                }
                let v = Value::Object(map);
                if anchor > 0 {
                    self.anchors.insert(anchor, v.clone());
                }
                Ok(v)
            }
            other => Err(SyntaxError {
                message: format!("unexpected YAML event {other:?}"),
                at,
            }),
        }
    }
}

/// YAML 1.2 core schema resolution of an unquoted scalar.
fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = s.parse::<i64>() {
            return Value::Number(n.into());
        }
        if let Ok(n) = s.parse::<u64>() {
            return Value::Number(n.into());
        }
    }
    if let Some(hex) = s.strip_prefix("0x") {
        if let Ok(n) = i64::from_str_radix(hex, 16) {
            return Value::Number(n.into());
        }
    }
    if let Some(oct) = s.strip_prefix("0o") {
        if let Ok(n) = i64::from_str_radix(oct, 8) {
            return Value::Number(n.into());
        }
    }
    let looks_float = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && s.bytes().any(|b| b.is_ascii_digit());
    if looks_float {
        if let Some(n) = s.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_found_in_its_object_or_not_at_all() {
        let text = "apiVersion: v1\nkind: A\n---\nkind: B\nspec:\n  ingress:\n  - from: []\n  - from:\n    - x: 1\n";
        let at = |line, col, f: &str| locate_field(text, line, col, f).map(|p| (p.line, p.col));
        assert_eq!(at(4, 1, "spec.ingress[1].from[0]"), Some((9, 7)));
        // Absent: the nearest enclosing field inside the object, never the object above it.
        assert_eq!(at(4, 1, "spec.ingress[1].ports[0]"), Some((8, 5)));
        assert_eq!(at(4, 1, "status.x"), None);
        assert_eq!(at(2, 1, "spec"), None, "not an object's start");
        let list = "kind: List\nitems:\n- kind: A\n  spec: {x: 1}\n";
        assert_eq!(
            locate_field(list, 1, 1, "spec.x"),
            None,
            "items share the list's start"
        );
        let json =
            "{\"kind\": \"List\", \"items\": [\n {\"kind\": \"A\",\n  \"spec\": {\"x\": 1}}]}";
        assert_eq!(locate_field(json, 2, 2, "spec.x").map(|p| p.line), Some(3));
        assert_eq!(
            FieldPath::parse("a.b[2][3].c").unwrap().to_string(),
            "a.b[2][3].c"
        );
        assert!(FieldPath::parse("a..b").is_none() && FieldPath::parse("a[x]").is_none());
    }

    #[test]
    fn multi_document_yaml_with_positions() {
        let text = "a: 1\n---\nkind: Pod\nmetadata:\n  name: x\n  labels:\n    app: \"80\"\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        let tree = |d: &Document| match &d.body {
            Body::Tree(v) => v.clone(),
            Body::Json(_) => panic!("YAML gives trees"),
        };
        assert_eq!(tree(&docs[1])["metadata"]["labels"]["app"], "80");
        assert_eq!(tree(&docs[0])["a"], 1);
        let loc = locate_fields(text, docs[1].offset, &LineIndex::new(text));
        let p = FieldPath::root().key("metadata").key("labels").key("app");
        assert_eq!(loc[&p], Position { line: 7, col: 5 });
    }

    #[test]
    fn json_stream_with_positions() {
        let text = "{\"kind\": \"Pod\"}\n  {\"kind\": \"Namespace\",\n \"x\": 1}";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].start, Position { line: 2, col: 3 });
        let loc = locate_fields(text, docs[1].offset, &LineIndex::new(text));
        assert_eq!(
            loc[&FieldPath::root().key("x")],
            Position { line: 3, col: 2 }
        );
    }

    #[test]
    fn scalars_resolve_like_the_core_schema() {
        assert_eq!(resolve_plain("80"), Value::from(80));
        assert_eq!(resolve_plain("http"), Value::from("http"));
        assert_eq!(resolve_plain("true"), Value::from(true));
        assert_eq!(resolve_plain("~"), Value::Null);
        assert_eq!(resolve_plain("1.5"), Value::from(1.5));
        assert_eq!(resolve_plain("10.0.0.0/8"), Value::from("10.0.0.0/8"));
    }

    #[test]
    fn duplicate_keys_are_rejected_with_position() {
        let err = parse_documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.at.line, 3);
        assert!(err.message.contains("duplicate key"));
    }

    #[test]
    fn non_ascii_offsets_are_found_in_linear_time() {
        let doc = "kind: Namespace\nmetadata:\n  name: a # déjà vu\n---\n";
        let text = doc.repeat(2000);
        let mut b = Builder::new(&text, None);
        let docs = b.documents().unwrap();
        assert_eq!(docs.len(), 2000);
        for d in &docs {
            assert!(text[d.offset..].starts_with("kind: Namespace"));
        }
        // Walking from the start for each document would take ~2000²/2 × 40 steps.
        assert!(b.steps <= text.chars().count(), "{} steps", b.steps);
    }

    #[test]
    fn alias_bombs_and_deep_nesting_fail_with_a_location() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            bomb.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                [prev.as_str(); 10].join(", ")
            ));
        }
        let err = parse_documents(&bomb).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{}", err.message);
        assert!(err.at.line > 1 && err.at.line <= 10, "{:?}", err.at);
        // A few aliases of a small anchor stay fine.
        parse_documents("a: &x {k: v}\nb: *x\nc: *x\n").unwrap();
        // Flow and JSON nesting: an error (serde_json's own limit or ours), not a crash.
        for deep in ["[".repeat(10_000), "a: ".to_string() + &"[".repeat(10_000)] {
            assert!(parse_documents(&deep).is_err());
        }
        let err = parse_documents(&("- ".repeat(10_000) + "x\n")).unwrap_err();
        assert!(
            err.message.contains("nesting deeper than 128"),
            "{}",
            err.message
        );
        assert_eq!(err.at.line, 1);
    }

    #[test]
    fn json_followed_by_yaml_is_read_as_yaml() {
        let docs = parse_documents("{\"kind\": \"Namespace\"}\n---\nkind: Pod\n").unwrap();
        assert_eq!(docs.len(), 2);
        // A broken JSON text still gets the JSON error.
        let err = parse_documents("{\"kind\": }").unwrap_err();
        assert!(err.message.contains("invalid JSON"), "{}", err.message);
    }

    #[test]
    fn anchors_and_merge_keys() {
        let docs = parse_documents("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n").unwrap();
        let Body::Tree(v) = &docs[0].body else {
            panic!("YAML gives trees")
        };
        assert_eq!(v["other"]["x"], 1);
        assert_eq!(v["other"]["y"], 2);
    }
}
