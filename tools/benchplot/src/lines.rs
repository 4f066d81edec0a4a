//! The benchmark's raw lines: `BENCH KIND key=value...` from the guests,
//! dom0 and the host (`docs/benchmarks.md` lists them), and the
//! `PASS`/`FAIL` lines of the emulated host's parts.

use std::collections::BTreeMap;

/// One `BENCH` line: its kind (the word after `BENCH`) and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// `clock`, `map`, `transfer`, `config`, `host`, `callgrind`, ...
    pub kind: String,
    /// The `key=value` words, in order of their keys.
    pub fields: BTreeMap<String, String>,
    /// Its number in the input, from 1, for error messages.
    pub at: usize,
}

impl Line {
    /// The field `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// The field `key` as a number; an error naming the line if it is
    /// absent or not a number.
    pub fn num(&self, key: &str) -> Result<f64, String> {
        let v = self
            .get(key)
            .ok_or_else(|| format!("line {}: BENCH {} has no {key}=", self.at, self.kind))?;
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("line {}: {key}={v} is not a number", self.at))
    }

    /// The field `key` as text; an error naming the line if absent.
    pub fn text(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("line {}: BENCH {} has no {key}=", self.at, self.kind))
    }
}

/// What the input holds: its `BENCH` lines and its result lines.
#[derive(Debug, Default)]
pub struct Input {
    /// The `BENCH` lines, in input order.
    pub bench: Vec<Line>,
    /// `PASS ...` and `FAIL ...` lines, as they were.
    pub results: Vec<String>,
}

/// Reads `text`: lines that start with `BENCH ` (after leading blanks)
/// become [`Line`]s, `PASS `/`FAIL ` lines results; the rest is ignored.
/// A `BENCH` line with a word that is not `key=value` is an error.
pub fn parse(text: &str) -> Result<Input, String> {
    let mut input = Input::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with("PASS ") || line.starts_with("FAIL ") {
            input.results.push(line.to_string());
            continue;
        }
        let Some(rest) = line.strip_prefix("BENCH ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let kind = words
            .next()
            .ok_or_else(|| format!("line {}: BENCH without a kind", i + 1))?;
        let mut fields = BTreeMap::new();
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| format!("line {}: \"{w}\" is not key=value", i + 1))?;
            fields.insert(k.to_string(), v.to_string());
        }
        input.bench.push(Line {
            kind: kind.to_string(),
            fields,
            at: i + 1,
        });
    }
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bench_and_result_lines() {
        let text = "noise\n  BENCH map way=linux n=16 ns=1200\r\nPASS bench-ours (x)\nFAIL bench-linux: why\n";
        let input = parse(text).unwrap();
        assert_eq!(input.bench.len(), 1);
        let l = &input.bench[0];
        assert_eq!(l.kind, "map");
        assert_eq!(l.get("way"), Some("linux"));
        assert_eq!(l.num("n").unwrap(), 16.0);
        assert_eq!(l.at, 2);
        assert_eq!(input.results.len(), 2);
    }

    #[test]
    fn bad_words_and_numbers_are_errors() {
        assert!(
            parse("BENCH map way")
                .unwrap_err()
                .contains("not key=value")
        );
        let input = parse("BENCH map ns=fast").unwrap();
        assert!(
            input.bench[0]
                .num("ns")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(input.bench[0].num("n").unwrap_err().contains("has no n="));
    }
}
