//! `[retention]`: how long terminal records stay in the replicated state,
//! how long an issued battle session id waits to be used, and how many of
//! those a title region may hold.

use crate::{invalid, ConfigError};
use respawn_types::limits;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Terminal placements, battle sessions, player battle sessions and
    /// exited DS processes leave the state this long after they end
    /// (seconds, 1–2 592 000; default 3600).
    pub records_secs: u64,
    /// A battle session id from RequestBattleSessionID not used in
    /// StartBattleSessionPlacement within this time expires (seconds,
    /// 1–2 592 000; default 600).
    pub issued_ids_secs: u64,
    /// Most issued, not yet used battle session ids per title region; past
    /// it RequestBattleSessionID answers 429 (1–1 000 000; default 10 000).
    pub max_issued_ids_per_title_region: u32,
    /// How often the leader looks for records to remove (milliseconds,
    /// 100–60 000; default 2000). While it finds full batches it goes on at once.
    pub interval_ms: u64,
    /// Most records of each kind one prune command removes (1–2000; default 500).
    pub batch: usize,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            records_secs: 3_600,
            issued_ids_secs: 600,
            max_issued_ids_per_title_region: 10_000,
            interval_ms: 2_000,
            batch: 500,
        }
    }
}

impl RetentionSection {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let (lo, hi) = limits::in_secs(limits::RETENTION_RANGE_MS);
        let range = |field: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(invalid(
                    format!("retention.{field}"),
                    format!("must be between {lo} and {hi}, got {v}"),
                ))
            }
        };
        range("records_secs", self.records_secs, lo, hi)?;
        range("issued_ids_secs", self.issued_ids_secs, lo, hi)?;
        let (clo, chi) = limits::ISSUED_IDS_CAP_RANGE;
        range(
            "max_issued_ids_per_title_region",
            u64::from(self.max_issued_ids_per_title_region),
            u64::from(clo),
            u64::from(chi),
        )?;
        range("interval_ms", self.interval_ms, 100, 60_000)?;
        range(
            "batch",
            self.batch as u64,
            1,
            limits::MAX_PRUNE_BATCH as u64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounds_are_checked() {
        let r = RetentionSection::default();
        r.validate().unwrap();
        for bad in [
            RetentionSection {
                records_secs: 0,
                ..r.clone()
            },
            RetentionSection {
                records_secs: 2_592_001,
                ..r.clone()
            },
            RetentionSection {
                issued_ids_secs: 0,
                ..r.clone()
            },
            RetentionSection {
                max_issued_ids_per_title_region: 0,
                ..r.clone()
            },
            RetentionSection {
                interval_ms: 50,
                ..r.clone()
            },
            RetentionSection {
                batch: 2_001,
                ..r.clone()
            },
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains("retention."), "{e}");
        }
    }

    #[test]
    fn the_section_reads_from_toml_with_defaults_for_what_is_left_out() {
        let r: RetentionSection = toml::from_str("records_secs = 30").unwrap();
        assert_eq!(r.records_secs, 30);
        assert_eq!(r.batch, RetentionSection::default().batch);
    }
}
