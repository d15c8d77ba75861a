//! Plain text output: aligned columns, results, times and durations as people read them.

use serde_json::Value;

const RESULT_NAMES: [&str; 7] = ["success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"];

/// Prints `rows` under `header`, each column as wide as its widest cell.
pub fn print(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A result code's name; a running (no result yet) thing is "running".
pub fn result(value: &Value) -> String {
    match value.as_i64() {
        None => "running".to_string(),
        Some(code) => usize::try_from(code)
            .ok()
            .and_then(|i| RESULT_NAMES.get(i))
            .map_or_else(|| format!("result {code}"), |name| name.to_string()),
    }
}

/// An epoch-seconds time as `YYYY-MM-DD HH:MM:SS` UTC, or `-`.
pub fn time(value: &Value) -> String {
    value
        .as_i64()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map_or_else(|| "-".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// How long from `start` to `end` (epoch seconds; no end: still running, so until `now`), as `1h 2m 3s`.
pub fn duration(start: &Value, end: &Value, now: i64) -> String {
    let Some(start) = start.as_i64() else { return "-".to_string() };
    let seconds = end.as_i64().unwrap_or(now).saturating_sub(start).max(0);
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

/// A JSON value as a cell: strings bare, null as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) if s.is_empty() => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_times_and_durations_read_as_people_write_them() {
        assert_eq!(result(&json!(0)), "success");
        assert_eq!(result(&json!(6)), "cancelled");
        assert_eq!(result(&json!(null)), "running");
        assert_eq!(result(&json!(9)), "result 9");
        assert_eq!(time(&json!(0)), "1970-01-01 00:00:00");
        assert_eq!(time(&json!(null)), "-");
        assert_eq!(duration(&json!(100), &json!(105), 0), "5s");
        assert_eq!(duration(&json!(100), &json!(null), 100 + 3723), "1h 2m 3s");
        assert_eq!(duration(&json!(100), &json!(190), 0), "1m 30s");
        assert_eq!(cell(&json!("")), "-");
        assert_eq!(cell(&json!(3)), "3");
    }
}
