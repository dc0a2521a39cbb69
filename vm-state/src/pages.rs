//! Guest memory as pages: a full set or any subset (a pre-copy round, an
//! incremental checkpoint), with zero pages sent as runs of page numbers
//! rather than as 4 KiB of zeros each.

use serde::{Deserialize, Serialize};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::StateError;
use crate::envelope::{self, Kind};
use ftvm_core::memory::{GuestRam, PAGE_SIZE};

const PAGE: usize = PAGE_SIZE as usize;

/// Pages of guest memory: each page number (guest-physical address / 4096)
/// at most once, either in a run of all-zero pages or with its contents.
/// Applying a set writes exactly its pages: a page that became zero since
/// an earlier set is in a zero run, so a subset can follow a full set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageSet {
    /// (first page, count) of each run of zero pages, ascending.
    zero_runs: Vec<(u64, u64)>,
    /// The pages with data, ascending.
    numbers: Vec<u64>,
    /// Their contents, 4096 bytes each, in the order of `numbers`.
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

impl PageSet {
    /// Reads `pages` (page numbers, in any order, repeats allowed) from
    /// `memory`. The guest must not run meanwhile, or the set is only a
    /// pre-copy round that later rounds correct.
    pub fn capture(
        memory: &GuestRam,
        pages: impl IntoIterator<Item = u64>,
    ) -> Result<Self, StateError> {
        let mut pages: Vec<u64> = pages.into_iter().collect();
        pages.sort_unstable();
        pages.dedup();
        let mut set = PageSet::default();
        let mut page = [0u8; PAGE];
        for number in pages {
            let addr = number
                .checked_mul(PAGE_SIZE)
                .filter(|&addr| in_ram(memory, addr))
                .ok_or_else(|| outside(number))?;
            memory
                .read_slice(&mut page, GuestAddress(addr))
                .map_err(|_| outside(number))?;
            if is_zero(&page) {
                match set.zero_runs.last_mut() {
                    Some((first, count)) if *first + *count == number => *count += 1,
                    _ => set.zero_runs.push((number, 1)),
                }
            } else {
                set.numbers.push(number);
                set.data.extend_from_slice(&page);
            }
        }
        Ok(set)
    }

    /// Every page of `memory`.
    pub fn capture_all(memory: &GuestRam) -> Self {
        let pages = memory.iter().flat_map(|region| {
            let first = region.start_addr().0 / PAGE_SIZE;
            first..first + region.len() / PAGE_SIZE
        });
        Self::capture(memory, pages).expect("every page of RAM is in RAM")
    }

    /// Writes the pages into `memory`, after checking that all of them are
    /// in its RAM: a set that does not fit changes nothing. With
    /// `nonzero`, only those pages of `memory` may hold data (the rest is
    /// zero, as in a VM that never ran), so only those of the set's zero
    /// pages are written; without, every zero page is read to see.
    pub fn apply(&self, memory: &GuestRam, nonzero: Option<&DirtyPages>) -> Result<(), StateError> {
        self.check()?;
        if let Some(last) = self.last_page()
            && !in_ram(memory, last * PAGE_SIZE)
        {
            return Err(outside(last));
        }
        let write = |number: u64, bytes: &[u8]| {
            memory
                .write_slice(bytes, GuestAddress(number * PAGE_SIZE))
                .map_err(|_| outside(number))
        };
        let zero = [0u8; PAGE];
        let mut current = [0u8; PAGE];
        for &(first, count) in &self.zero_runs {
            for number in first..first + count {
                if nonzero.is_some_and(|nonzero| !nonzero.contains(number)) {
                    continue;
                }
                // A page never written reads as zeros without being
                // allocated: leave it so.
                memory
                    .read_slice(&mut current, GuestAddress(number * PAGE_SIZE))
                    .map_err(|_| outside(number))?;
                if !is_zero(&current) {
                    write(number, &zero)?;
                }
            }
        }
        for (&number, bytes) in self.numbers.iter().zip(self.data.chunks_exact(PAGE)) {
            write(number, bytes)?;
        }
        Ok(())
    }

    /// Pages in the set.
    pub fn len(&self) -> u64 {
        self.zero_pages() + self.numbers.len() as u64
    }

    /// Whether it has no page.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pages in the set that carry data (the others are zero).
    pub fn data_pages(&self) -> u64 {
        self.numbers.len() as u64
    }

    /// Pages in the set that are all zeros.
    pub fn zero_pages(&self) -> u64 {
        self.zero_runs.iter().map(|&(_, count)| count).sum()
    }

    /// The pages that carry data.
    pub fn data_page_numbers(&self) -> impl Iterator<Item = u64> + '_ {
        self.numbers.iter().copied()
    }

    /// The last page number in the set, if any.
    pub fn last_page(&self) -> Option<u64> {
        let zero = self
            .zero_runs
            .last()
            .map(|&(first, count)| first + count - 1);
        zero.max(self.numbers.last().copied())
    }

    /// Encodes the set on its own (a pre-copy round, a checkpoint's pages).
    pub fn encode(&self) -> Vec<u8> {
        envelope::encode(Kind::Pages, self)
    }

    /// Decodes and checks a set encoded by [`encode`](Self::encode).
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let set: Self = envelope::decode(Kind::Pages, bytes)?;
        set.check()?;
        Ok(set)
    }

    /// Refuses a set whose pages are out of order, repeated, or whose data
    /// does not match its page numbers.
    pub(crate) fn check(&self) -> Result<(), StateError> {
        let invalid = |what: &str| Err(StateError::Invalid(format!("page set: {what}")));
        if self.data.len() as u64 != self.numbers.len() as u64 * PAGE_SIZE {
            return invalid("its data is not one page per page number");
        }
        let runs_fit = self.zero_runs.iter().all(|&(first, count)| {
            count > 0 && first.checked_add(count).is_some_and(|end| end <= MAX_PAGES)
        });
        if !runs_fit || self.numbers.last().is_some_and(|&last| last >= MAX_PAGES) {
            return invalid("pages out of range");
        }
        let runs_ascend = self.zero_runs.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0);
        if !runs_ascend || !self.numbers.windows(2).all(|w| w[0] < w[1]) {
            return invalid("pages out of order or repeated");
        }
        let zero = |number: u64| {
            let after = self
                .zero_runs
                .partition_point(|&(first, _)| first <= number);
            after > 0 && number < self.zero_runs[after - 1].0 + self.zero_runs[after - 1].1
        };
        if self.numbers.iter().any(|&number| zero(number)) {
            return invalid("a page both zero and with data");
        }
        Ok(())
    }
}

/// Far beyond any RAM ftvm gives a guest; keeps page arithmetic in `u64`.
const MAX_PAGES: u64 = 1 << 40;

fn in_ram(memory: &GuestRam, addr: u64) -> bool {
    addr.checked_add(PAGE_SIZE - 1)
        .is_some_and(|last| memory.address_in_range(GuestAddress(last)))
        && memory.address_in_range(GuestAddress(addr))
}

fn outside(number: u64) -> StateError {
    StateError::Invalid(format!("page {number} is outside the VM's RAM"))
}

fn is_zero(page: &[u8; PAGE]) -> bool {
    page.chunks_exact(8)
        .all(|word| u64::from_ne_bytes(word.try_into().expect("8 bytes")) == 0)
}

/// A set of page numbers, as KVM's dirty log reports them: bit n of word
/// n / 64 is page n.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirtyPages {
    words: Vec<u64>,
}

impl DirtyPages {
    /// Pages from a dirty-log bitmap.
    pub fn from_words(words: Vec<u64>) -> Self {
        Self { words }
    }

    /// Adds the pages of another bitmap.
    pub fn add_words(&mut self, words: &[u64]) {
        if self.words.len() < words.len() {
            self.words.resize(words.len(), 0);
        }
        for (mine, theirs) in self.words.iter_mut().zip(words) {
            *mine |= theirs;
        }
    }

    /// Adds page number `page`.
    pub fn insert(&mut self, page: u64) {
        let word = (page / 64) as usize;
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (page % 64);
    }

    /// Whether page number `page` is in the set.
    pub fn contains(&self, page: u64) -> bool {
        self.words
            .get((page / 64) as usize)
            .is_some_and(|word| word & (1 << (page % 64)) != 0)
    }

    /// How many pages.
    pub fn count(&self) -> u64 {
        self.words
            .iter()
            .map(|word| u64::from(word.count_ones()))
            .sum()
    }

    /// Whether it has no page.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&word| word == 0)
    }

    /// The page numbers, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &word)| {
            (0..64)
                .filter(move |bit| word & (1 << bit) != 0)
                .map(move |bit| i as u64 * 64 + bit)
        })
    }
}
