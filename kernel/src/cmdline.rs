//! The kernel command line: `key=value` words separated by spaces.
//!
//! The kernel itself reads `loglevel=off|error|warn|info|debug|trace`,
//! `idle=poll` (`crate::events::set_idle_poll`) and `scenario=NAME` (see
//! [`crate::scenario`]); scenarios read their own keys
//! (`peer=`, `pages=`, ...) with [`Options::get`].

use log::LevelFilter;

/// Most words kept.
const MAX_WORDS: usize = 32;

/// The parsed command line.
pub struct Options<'a> {
    /// Maximum level of log messages printed.
    pub log_level: LevelFilter,
    /// The scenario to run, if any was named.
    pub scenario: Option<&'a str>,
    words: [Option<(&'a str, &'a str)>; MAX_WORDS],
}

impl<'a> Options<'a> {
    /// Parses `cmdline`. Words without `=` are kept with an empty value.
    pub fn parse(cmdline: &'a str) -> Self {
        let mut opts = Options {
            log_level: LevelFilter::Info,
            scenario: None,
            words: [None; MAX_WORDS],
        };
        for (slot, word) in opts.words.iter_mut().zip(cmdline.split_ascii_whitespace()) {
            *slot = Some(word.split_once('=').unwrap_or((word, "")));
        }
        if let Some(l) = opts.get("loglevel").and_then(|v| v.parse().ok()) {
            opts.log_level = l;
        }
        opts.scenario = opts.get("scenario").filter(|s| !s.is_empty());
        opts
    }

    /// The value of the last `key=value` word.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.words
            .iter()
            .flatten()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|&(_, v)| v)
    }

    /// The value of `key` as a number.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.parse().ok())
    }
}
