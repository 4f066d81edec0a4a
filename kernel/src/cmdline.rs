//! The kernel command line: `key=value` words separated by spaces.
//!
//! Known keys: `loglevel=off|error|warn|info|debug|trace` and
//! `scenario=NAME` (see [`crate::scenario`]). Unknown words are reported
//! and ignored, so a config written for a newer kernel still boots.

use log::LevelFilter;

/// The options the kernel understands.
pub struct Options<'a> {
    /// Maximum level of log messages printed.
    pub log_level: LevelFilter,
    /// The scenario to run, if any was named.
    pub scenario: Option<&'a str>,
    /// Words that were not understood, for a warning once logging works.
    pub unknown: [Option<&'a str>; 8],
}

impl<'a> Options<'a> {
    /// Parses `cmdline`.
    pub fn parse(cmdline: &'a str) -> Self {
        let mut opts = Options {
            log_level: LevelFilter::Info,
            scenario: None,
            unknown: [None; 8],
        };
        let mut n_unknown = 0;
        for word in cmdline.split_ascii_whitespace() {
            let parsed = match word.split_once('=') {
                Some(("loglevel", v)) => v.parse().map(|l| opts.log_level = l).is_ok(),
                Some(("scenario", v)) if !v.is_empty() => {
                    opts.scenario = Some(v);
                    true
                }
                _ => false,
            };
            if !parsed && n_unknown < opts.unknown.len() {
                opts.unknown[n_unknown] = Some(word);
                n_unknown += 1;
            }
        }
        opts
    }
}
