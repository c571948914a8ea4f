//! Sequence numbers: where a record sits in its shard's Raft log, and which shard that is.
//!
//! `10^55 + (epoch << 96) + (shard << 64) + (log_index << 16) + position`, printed as 56
//! decimal digits, so string order is numeric order. Derived from committed Raft state
//! only, so a leader change or a restart can never reuse or reorder one, and decoding one
//! gives the `log` key. Within a shard epoch and shard are fixed, so order is log order; a
//! reshard's children have a higher epoch, so their numbers sort after their parents'. The
//! shard index lets a read refuse another shard's number, as Kinesis does.

use crate::error::{Error, Result};

/// The most records one Raft entry may carry (the position field is 16 bits).
pub const MAX_RECORDS_PER_ENTRY: usize = 1 << 16;

/// What every sequence number of one shard shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceBase {
    /// Above every parent's epoch.
    pub epoch: u32,
    /// The shard's index in its stream (`shardId-<index>`).
    pub shard: u32,
}

impl SequenceBase {
    /// The number of the record at `position` in the entry at `log_index`.
    pub fn at(self, log_index: u64, position: u16) -> SequenceNumber {
        assert!(log_index < (1 << 48), "log index beyond 2^48");
        SequenceNumber { epoch: self.epoch, shard: self.shard, log_index, position }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceNumber {
    pub epoch: u32,
    pub shard: u32,
    pub log_index: u64,
    pub position: u16,
}

impl SequenceNumber {
    pub fn base(self) -> SequenceBase {
        SequenceBase { epoch: self.epoch, shard: self.shard }
    }

    fn packed(self) -> u128 {
        (u128::from(self.epoch) << 96)
            | (u128::from(self.shard) << 64)
            | (u128::from(self.log_index) << 16)
            | u128::from(self.position)
    }

    /// The number that sorts right after this one (the next possible record).
    pub fn successor(self) -> SequenceNumber {
        match self.position.checked_add(1) {
            Some(p) => SequenceNumber { position: p, ..self },
            None => SequenceNumber { log_index: self.log_index + 1, position: 0, ..self },
        }
    }

    /// The number just before this one: AFTER it is exactly here. Names where to resume
    /// a subscription that has delivered nothing yet.
    pub fn predecessor(self) -> SequenceNumber {
        match self.position.checked_sub(1) {
            Some(p) => SequenceNumber { position: p, ..self },
            None => {
                SequenceNumber { log_index: self.log_index.saturating_sub(1), position: u16::MAX, ..self }
            }
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        let bad =
            || Error::invalid(format!("Invalid SequenceNumber {s}: it does not belong to a Freshet shard."));
        if s.len() != 56 || !s.starts_with('1') || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let packed: u128 = s[1..].parse().map_err(|_| bad())?;
        Ok(SequenceNumber {
            epoch: (packed >> 96) as u32,
            shard: (packed >> 64) as u32,
            log_index: ((packed >> 16) as u64) & ((1 << 48) - 1),
            position: packed as u16,
        })
    }
}

impl std::fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "1{:055}", self.packed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(epoch: u32, shard: u32, log_index: u64, position: u16) -> SequenceNumber {
        SequenceBase { epoch, shard }.at(log_index, position)
    }

    #[test]
    fn round_trips_and_is_56_digits() {
        for s in [
            seq(0, 0, 0, 0),
            seq(0, 5, 1, 7),
            seq(3, 17, 123_456_789, 65535),
            seq(u32::MAX, u32::MAX, (1 << 48) - 1, u16::MAX),
        ] {
            let text = s.to_string();
            assert_eq!(text.len(), 56, "{text}");
            assert_eq!(SequenceNumber::parse(&text).unwrap(), s);
        }
    }

    #[test]
    fn string_order_is_numeric_order() {
        let mut v = vec![
            seq(1, 0, 0, 0),
            seq(0, 3, 2, 0),
            seq(0, 3, 1, 65535),
            seq(0, 3, 1, 2),
            seq(0, 3, 10, 0),
            // A child (higher epoch) sorts after its parent whatever the indexes.
            seq(1, 1, 0, 0),
            seq(0, 7, 1 << 40, 9),
        ];
        let mut by_string = v.clone();
        by_string.sort_by_key(|s| s.to_string());
        v.sort();
        assert_eq!(v, by_string);
    }

    #[test]
    fn successor_carries_into_next_entry() {
        assert_eq!(seq(0, 2, 5, 1).successor(), seq(0, 2, 5, 2));
        assert_eq!(seq(0, 2, 5, u16::MAX).successor(), seq(0, 2, 6, 0));
    }

    #[test]
    fn after_the_predecessor_is_here() {
        for s in [seq(3, 1, 5, 0), seq(3, 1, 5, 7), seq(0, 0, 1, 0)] {
            assert_eq!(s.predecessor().successor(), s);
            assert!(s.predecessor() < s);
        }
    }

    #[test]
    fn a_number_names_its_shard() {
        let s = SequenceNumber::parse(&seq(2, 9, 44, 3).to_string()).unwrap();
        assert_eq!(s.base(), SequenceBase { epoch: 2, shard: 9 });
        assert_ne!(s.base(), SequenceBase { epoch: 2, shard: 8 });
    }

    #[test]
    fn rejects_foreign_numbers() {
        for s in [
            "",
            "0",
            "123",
            "49590338271490256608559692538361571095921575989136588898",
            "1000000000000000000000000000000000000000000000000000000x",
            "2000000000000000000000000000000000000000000000000000000000",
            // Beyond 10^55 + 2^128: no Freshet shard has such a number.
            "19999999999999999999999999999999999999999999999999999999",
        ] {
            assert!(SequenceNumber::parse(s).is_err(), "{s}");
        }
    }
}
