//! Observed connections for `weir synth`, in either of two forms (told apart per file):
//!
//! - CSV with a header naming at least `src,dst,protocol,port` (other columns ignored; with
//!   a `verdict` column, only rows whose verdict is `allowed`/`true`/`connected` count):
//!   `production/todos,production/redis,TCP,6379`. Sides are `namespace/name` or an address.
//! - What `weir drops` prints: `would drop A → B TCP 6379: …` lines are connections that
//!   happened (an audited policy let them through); `dropped …` lines did not happen and are
//!   left out, as are blank lines.
//!
//! Every line is the user's (or an agent's) text: a bad one is an error at `file:line:col`.

use weir_model::{PortKey, Protocol};

use crate::{Diagnostic, LoadError, Severity};

/// One observed connection, its sides as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowText {
    pub src: String,
    pub dst: String,
    pub port: PortKey,
    /// `file:line`, for errors about the sides (an unknown endpoint).
    pub origin: String,
}

/// Most lines read from one file: a bound on what an agent's stream or a log can make weir
/// hold.
pub const MAX_LINES: usize = 1_000_000;

/// The flows of one file (`file` names it in errors).
pub fn parse_flows(file: &str, text: &str) -> Result<Vec<FlowText>, LoadError> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut problem = |line: usize, col: usize, field: &str, message: String| {
        problems.push(Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            line,
            col,
            field: field.to_string(),
            message,
        })
    };
    let lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let first = lines
        .clone()
        .find(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let csv =
        first.is_some_and(|(_, l)| !l.starts_with("would drop ") && !l.starts_with("dropped "));
    let mut columns: Option<Columns> = None;
    for (n, line) in lines {
        if n > MAX_LINES {
            problem(n, 1, "(file)", format!("more than {MAX_LINES} lines"));
            break;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if !csv {
            match drops_line(line) {
                Ok(Some((src, dst, port))) => out.push(FlowText {
                    src,
                    dst,
                    port,
                    origin: format!("{file}:{n}"),
                }),
                Ok(None) => {}
                Err((col, why)) => problem(n, col, "(line)", why),
            }
            continue;
        }
        let Some(cols) = &columns else {
            match Columns::of(line) {
                Ok(c) => {
                    columns = Some(c);
                    continue;
                }
                Err(why) => {
                    problem(n, 1, "(header)", why);
                    break;
                }
            }
        };
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let cell = |i: usize| cells.get(i).copied().unwrap_or("");
        // Where a cell starts, for errors.
        let col_of = |i: usize| 1 + line.split(',').take(i).map(|c| c.len() + 1).sum::<usize>();
        if let Some(v) = cols.verdict {
            if !matches!(
                cell(v).to_ascii_lowercase().as_str(),
                "allowed" | "true" | "connected"
            ) {
                continue;
            }
        }
        let (src, dst) = (cell(cols.src), cell(cols.dst));
        for (i, side) in [(cols.src, src), (cols.dst, dst)] {
            if side.is_empty() {
                problem(
                    n,
                    col_of(i),
                    "side",
                    "empty: expected namespace/name or an address".into(),
                );
            }
        }
        let protocol = Protocol::parse(&cell(cols.protocol).to_ascii_uppercase());
        if protocol.is_none() {
            problem(
                n,
                col_of(cols.protocol),
                "protocol",
                format!("{:?}: expected TCP, UDP or SCTP", cell(cols.protocol)),
            );
        }
        let port = cell(cols.port).parse::<u16>().ok().filter(|p| *p > 0);
        if port.is_none() {
            problem(
                n,
                col_of(cols.port),
                "port",
                format!("{:?}: expected a port 1-65535", cell(cols.port)),
            );
        }
        if let (false, false, Some(protocol), Some(port)) =
            (src.is_empty(), dst.is_empty(), protocol, port)
        {
            out.push(FlowText {
                src: src.to_string(),
                dst: dst.to_string(),
                port: PortKey::new(protocol, port),
                origin: format!("{file}:{n}"),
            });
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(LoadError::Invalid(problems))
    }
}

/// Which CSV column holds what.
struct Columns {
    src: usize,
    dst: usize,
    protocol: usize,
    port: usize,
    verdict: Option<usize>,
}

impl Columns {
    fn of(header: &str) -> Result<Columns, String> {
        let names: Vec<String> = header
            .split(',')
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        let find = |name: &str| names.iter().position(|n| n == name);
        match (find("src"), find("dst"), find("protocol"), find("port")) {
            (Some(src), Some(dst), Some(protocol), Some(port)) => Ok(Columns {
                src,
                dst,
                protocol,
                port,
                verdict: find("verdict"),
            }),
            _ => Err(format!(
                "{header:?}: expected a CSV header with src,dst,protocol,port (or `weir drops` lines)"
            )),
        }
    }
}

/// A column and what is wrong there.
type Located = (usize, String);

/// A `weir drops` line: `Some` for a would-drop (it happened), `None` for a drop; `Err` with
/// the column where it stops making sense.
fn drops_line(line: &str) -> Result<Option<(String, String, PortKey)>, Located> {
    if line.starts_with("dropped ") {
        return Ok(None);
    }
    let Some(rest) = line.strip_prefix("would drop ") else {
        return Err((
            1,
            "expected a `weir drops` line (would drop … or dropped …)".into(),
        ));
    };
    let head = rest.split_once(": ").map_or(rest, |(h, _)| h);
    let words: Vec<&str> = head.split(' ').collect();
    let [src, "→", dst, proto, port] = words[..] else {
        return Err((
            12,
            "expected `SRC → DST PROTOCOL PORT: why` (a port-less protocol cannot be synthesised)"
                .into(),
        ));
    };
    // The protocol's column: after `would drop `, the sides and the arrow.
    let col = 1
        + "would drop ".len()
        + src.chars().count()
        + " → ".chars().count()
        + dst.chars().count()
        + 1;
    let key: PortKey = format!("{proto}/{port}")
        .parse()
        .map_err(|e: String| (col, e))?;
    Ok(Some((src.to_string(), dst.to_string(), key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flows(text: &str) -> Vec<(String, String, String)> {
        parse_flows("f", text)
            .unwrap()
            .into_iter()
            .map(|f| (f.src, f.dst, f.port.to_string()))
            .collect()
    }

    fn errors(text: &str) -> Vec<String> {
        match parse_flows("f", text) {
            Err(LoadError::Invalid(d)) => d.iter().map(|d| d.to_string()).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn csv_and_drops_lines_read_alike() {
        let want = vec![(
            "production/todos".to_string(),
            "production/redis".to_string(),
            "TCP/6379".to_string(),
        )];
        assert_eq!(
            flows("src,dst,protocol,port\nproduction/todos,production/redis,tcp,6379\n"),
            want
        );
        // A matrix CSV: its verdict column picks the connections that happened.
        assert_eq!(
            flows("src,dst,protocol,port,verdict\nproduction/todos,production/redis,TCP,6379,allowed\na/b,c/d,TCP,1,denied\n"),
            want
        );
        assert_eq!(
            flows("would drop production/todos → production/redis TCP 6379: ingress isolated by p (audit)\n\ndropped a/b → c/d TCP 1: x\n"),
            want
        );
    }

    #[test]
    fn bad_lines_are_located() {
        assert_eq!(
            errors("src,dst,protocol,port\na/b,c/d,ICMP,1\na/b,,TCP,0\n"),
            vec![
                "f:2:9: error: protocol: \"ICMP\": expected TCP, UDP or SCTP",
                "f:3:5: error: side: empty: expected namespace/name or an address",
                "f:3:10: error: port: \"0\": expected a port 1-65535",
            ]
        );
        assert_eq!(
            errors("src,to\n"),
            vec!["f:1:1: error: (header): \"src,to\": expected a CSV header with src,dst,protocol,port (or `weir drops` lines)"]
        );
        assert_eq!(
            errors("would drop a/b → c/d protocol 1: x\nwould drop nonsense\n"),
            vec![
                "f:1:22: error: (line): \"protocol/1\": protocol must be TCP, UDP or SCTP",
                "f:2:12: error: (line): expected `SRC → DST PROTOCOL PORT: why` (a port-less protocol cannot be synthesised)",
            ]
        );
    }
}
