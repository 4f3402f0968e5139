//! Server-sent events from `/api/events`: an incremental parser (untrusted input, bounded) and
//! the rendering of audit events.

use netclaw_core::wire::format_unix;
use serde_json::Value;

use crate::api::printable;

/// Longest line kept; a longer one is a protocol error.
pub const MAX_LINE: usize = 64 * 1024;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` field, if any.
    pub event: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

/// A line longer than [`MAX_LINE`].
#[derive(Debug, thiserror::Error)]
#[error("the event stream sent a line longer than {MAX_LINE} bytes")]
pub struct LineTooLong;

/// Incremental SSE parser (the WHATWG event-stream format: `event`, `data`, comments; `id` and
/// `retry` are ignored).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    saw_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        let mut out = Vec::new();
        for &b in chunk {
            match b {
                b'\n' if self.saw_cr => self.saw_cr = false,
                b'\n' | b'\r' => {
                    self.saw_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(ev) = self.line_done(&line) {
                        out.push(ev);
                    }
                }
                _ => {
                    self.saw_cr = false;
                    if self.line.len() >= MAX_LINE {
                        return Err(LineTooLong);
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            let data = self.data.take()?;
            return Some(SseEvent {
                event: self.event.take(),
                data,
            });
        }
        if line[0] == b':' {
            return None; // comment / keep-alive
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

/// One JSON line for `--json`: the event's data when it is JSON, else `{event, data}`.
pub fn json_line(ev: &SseEvent) -> String {
    match serde_json::from_str::<Value>(&ev.data) {
        Ok(v) => v.to_string(),
        Err(_) => serde_json::json!({ "event": ev.event, "data": ev.data }).to_string(),
    }
}

/// A human-readable line: time, kind, principal, detail.
pub fn text_line(ev: &SseEvent) -> String {
    let v: Value = match serde_json::from_str(&ev.data) {
        Ok(v) => v,
        Err(_) => {
            return format!(
                "{} {}",
                printable(ev.event.as_deref().unwrap_or("message")),
                printable(&ev.data)
            )
        }
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(printable);
    let at = v
        .get("at")
        .and_then(Value::as_u64)
        .map(format_unix)
        .unwrap_or_else(|| "-".into());
    let kind = s("kind")
        .or_else(|| ev.event.as_deref().map(printable))
        .unwrap_or_else(|| "event".into());
    format!(
        "{at}  {kind:<22} {}  {}",
        s("principal").unwrap_or_else(|| "-".into()),
        s("detail").unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b"event: device-paired\nda").unwrap().is_empty());
        let evs = p.push(b"ta: {\"kind\":\"device-paired\"}\n\n").unwrap();
        assert_eq!(
            evs,
            vec![SseEvent {
                event: Some("device-paired".into()),
                data: "{\"kind\":\"device-paired\"}".into()
            }]
        );
    }

    #[test]
    fn ignores_comments_and_joins_data_lines() {
        let mut p = SseParser::default();
        let evs = p
            .push(b":keep-alive\r\n\r\ndata:a\r\ndata: b\r\n\r\n")
            .unwrap();
        assert_eq!(
            evs,
            vec![SseEvent {
                event: None,
                data: "a\nb".into()
            }]
        );
    }

    #[test]
    fn bare_cr_ends_lines() {
        let mut p = SseParser::default();
        let evs = p.push(b"data: x\r\r").unwrap();
        assert_eq!(evs.len(), 1);
    }

    #[test]
    fn refuses_endless_lines() {
        let mut p = SseParser::default();
        assert!(p.push(&vec![b'a'; MAX_LINE + 1]).is_err());
    }

    #[test]
    fn renders_audit_events() {
        let ev = SseEvent {
            event: Some("device-paired".into()),
            data: r#"{"at":0,"kind":"device-paired","principal":"Anonymous","detail":"device x"}"#
                .into(),
        };
        assert_eq!(
            json_line(&ev),
            r#"{"at":0,"detail":"device x","kind":"device-paired","principal":"Anonymous"}"#
        );
        let t = text_line(&ev);
        assert!(t.starts_with("1970-01-01T00:00:00Z  device-paired"), "{t}");
        assert!(t.ends_with("Anonymous  device x"), "{t}");
        let raw = SseEvent {
            event: None,
            data: "not json\u{1b}[2J".into(),
        };
        assert_eq!(
            json_line(&raw),
            r#"{"data":"not json\u001b[2J","event":null}"#
        );
        assert!(!text_line(&raw).contains('\u{1b}'));
    }
}
