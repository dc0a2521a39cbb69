//! A debugging session over a replay: breakpoints, write watchpoints, and
//! moving forwards and backwards between positions.
//!
//! Going back means going to an earlier [`Position`]: the replay starts
//! again from the beginning and runs forward to it, exits freely and the
//! last steps one by one. Every stop is at an exact position: a breakpoint
//! that stops a free run (whose steps nobody counted) is found again by
//! running to the start of its interval and stepping to it.

use super::guest_view::{GuestView, ReadError};
use super::replayer::{Position, ReplayError, Replayer, Stop};
use super::watch::Watch;
use crate::vstate::BREAKPOINT_SLOTS;

/// Why the session stopped moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// A step, forwards or backwards, is done; or a goto arrived.
    Done,
    /// At a breakpoint.
    Breakpoint,
    /// Just after a write that changed the watch at `address` (going
    /// forwards), or just before it (going backwards).
    Watch {
        /// The watch's address, as gdb gave it.
        address: u64,
    },
    /// The caller interrupted a forward run.
    Interrupted,
    /// Going backwards reached the start of the replay.
    Start,
    /// The replay ended (see [`Replayer::ending`]).
    Ended,
}

/// Why a breakpoint or a watch cannot be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Every debug register holds a breakpoint.
    #[error("all {BREAKPOINT_SLOTS} hardware breakpoints are in use")]
    NoBreakpointSlot,
    /// The watched address is not in RAM.
    #[error("cannot watch {address:#x}: {source}")]
    WatchUnmapped {
        /// The address, as gdb gave it.
        address: u64,
        /// Why it cannot be read.
        source: ReadError,
    },
}

/// The last hit a backward search found.
#[derive(Debug, Clone, Copy)]
enum Found {
    /// At an exact position: a breakpoint's, or just after a watched write.
    Exact { position: Position, halt: Halt },
    /// The `hits`th breakpoint hit after exit `interval`.
    Counted { interval: u64, hits: u64 },
}

/// A replay being debugged: where it is, its breakpoints and watches.
#[derive(Debug)]
pub struct Session {
    replayer: Replayer,
    breakpoints: [Option<u64>; BREAKPOINT_SLOTS],
    watches: Vec<Watch>,
}

impl Session {
    /// Debugs `replayer`, a stepping one, from where it is.
    pub fn new(replayer: Replayer) -> Self {
        Self {
            replayer,
            breakpoints: [None; BREAKPOINT_SLOTS],
            watches: Vec::new(),
        }
    }

    /// The replay.
    pub fn replayer(&self) -> &Replayer {
        &self.replayer
    }

    /// The replay back, once debugging is over.
    pub fn into_replayer(self) -> Replayer {
        self.replayer
    }

    /// Where the session is. Exact: every stop is resolved.
    pub fn position(&self) -> Position {
        self.replayer
            .position()
            .expect("a session resolves every stop to its position")
    }

    /// Arms a hardware breakpoint at `address`, in a free debug register.
    pub fn add_breakpoint(&mut self, address: u64) -> Result<(), SessionError> {
        if self.breakpoints.contains(&Some(address)) {
            return Ok(());
        }
        let slot = self
            .breakpoints
            .iter_mut()
            .find(|slot| slot.is_none())
            .ok_or(SessionError::NoBreakpointSlot)?;
        *slot = Some(address);
        Ok(())
    }

    /// Whether there was one.
    pub fn remove_breakpoint(&mut self, address: u64) -> bool {
        match self
            .breakpoints
            .iter_mut()
            .find(|slot| **slot == Some(address))
        {
            Some(slot) => {
                *slot = None;
                true
            }
            None => false,
        }
    }

    /// Watches writes to `len` bytes at virtual address `address`, where
    /// the guest maps them now.
    pub fn add_watch(&mut self, address: u64, len: u64) -> Result<(), SessionError> {
        let state = self.replayer.synced();
        let view = GuestView::new(self.replayer.memory(), &state.sregs);
        let watch = Watch::new(address, len, &view)
            .map_err(|source| SessionError::WatchUnmapped { address, source })?;
        self.watches.push(watch);
        Ok(())
    }

    /// Whether there was one.
    pub fn remove_watch(&mut self, address: u64, len: u64) -> bool {
        let found = self
            .watches
            .iter()
            .position(|watch| watch.address == address && watch.len == len);
        found.map(|index| self.watches.remove(index)).is_some()
    }

    /// One step forward.
    pub fn step(&mut self) -> Result<Halt, ReplayError> {
        let before = self.replayer.watched_values(&self.watches);
        if self.replayer.step()? == Stop::Ended {
            return Ok(Halt::Ended);
        }
        Ok(match self.changed_watch(&before) {
            Some(address) => Halt::Watch { address },
            None => Halt::Done,
        })
    }

    /// Forward to the next breakpoint, watched write or the end;
    /// `interrupted` is asked at every exit.
    pub fn resume(&mut self, interrupted: &mut dyn FnMut() -> bool) -> Result<Halt, ReplayError> {
        let start = self.position();
        let stop =
            self.replayer
                .continue_to(&self.breakpoints, &self.watches, None, interrupted)?;
        Ok(match stop {
            Stop::Breakpoint(pc) => {
                if self.replayer.position().is_none() {
                    let exit = self.replayer.exit();
                    self.find_hit(start, exit, pc)?;
                }
                Halt::Breakpoint
            }
            Stop::Watch(address) => Halt::Watch { address },
            Stop::Interrupted => Halt::Interrupted,
            Stop::Ended => Halt::Ended,
            Stop::Arrived => unreachable!("a run without a last exit arrives nowhere"),
        })
    }

    /// One step back: to the position a step from which comes here.
    pub fn reverse_step(&mut self) -> Result<Halt, ReplayError> {
        let here = self.position();
        if here.exit == 0 && here.steps == 0 {
            return Ok(Halt::Start);
        }
        let previous = self.previous_position(here)?;
        self.goto(previous)?;
        let after = self.replayer.watched_values(&self.watches);
        self.replayer.step()?;
        let watch = self.changed_watch(&after);
        self.goto(previous)?;
        Ok(match watch {
            Some(address) => Halt::Watch { address },
            None => Halt::Done,
        })
    }

    /// Back to the last breakpoint hit before here, or to just before the
    /// last write that changed a watch, or to the start. Searches forward
    /// from the last checkpoint before here, then from the one before that,
    /// and so on.
    pub fn reverse_resume(&mut self) -> Result<Halt, ReplayError> {
        let mut end = self.position();
        while end > Position::at_exit(0) {
            // A checkpoint strictly before `end`.
            let before = if end.steps > 0 {
                end.exit
            } else {
                end.exit - 1
            };
            self.replayer.restart_before(before)?;
            let start = self.position();
            if let Some(found) = self.last_hit_before(end)? {
                return self.go_to_hit(found);
            }
            end = start;
        }
        self.goto(Position::at_exit(0))?;
        Ok(Halt::Start)
    }

    /// Runs forward from here to `end` (before which the replay went
    /// before), noting the last breakpoint hit or watched write: free runs
    /// to `end`'s exit, then steps.
    fn last_hit_before(&mut self, end: Position) -> Result<Option<Found>, ReplayError> {
        let mut last = None;
        loop {
            let stop = self.replayer.continue_to(
                &self.breakpoints,
                &self.watches,
                Some(end.exit),
                &mut || false,
            )?;
            let halt = match stop {
                Stop::Breakpoint(_) => Halt::Breakpoint,
                Stop::Watch(address) => Halt::Watch { address },
                // The replay was at `end` before, so it cannot end before.
                Stop::Arrived | Stop::Ended | Stop::Interrupted => break,
            };
            last = Some(match (self.replayer.position(), last) {
                (Some(position), _) => Found::Exact { position, halt },
                (None, Some(Found::Counted { interval, hits }))
                    if interval == self.replayer.exit() =>
                {
                    Found::Counted {
                        interval,
                        hits: hits + 1,
                    }
                }
                (None, _) => Found::Counted {
                    interval: self.replayer.exit(),
                    hits: 1,
                },
            });
        }
        while self.position() < end && self.replayer.ending().is_none() {
            if self.replayer.at_breakpoint(&self.breakpoints) {
                last = Some(Found::Exact {
                    position: self.position(),
                    halt: Halt::Breakpoint,
                });
            }
            let before = self.replayer.watched_values(&self.watches);
            if self.replayer.step()? == Stop::Ended {
                break;
            }
            if let Some(address) = self.changed_watch(&before) {
                last = Some(Found::Exact {
                    position: self.position(),
                    halt: Halt::Watch { address },
                });
            }
        }
        Ok(last)
    }

    /// Goes to a hit a backward search found.
    fn go_to_hit(&mut self, found: Found) -> Result<Halt, ReplayError> {
        match found {
            Found::Exact { position, halt } => {
                // A watched write is shown from before it, going backwards.
                let position = match halt {
                    Halt::Watch { .. } => self.previous_position(position)?,
                    _ => position,
                };
                self.goto(position)?;
                Ok(halt)
            }
            Found::Counted { interval, hits } => {
                self.goto(Position::at_exit(interval))?;
                let mut seen = 0;
                loop {
                    if self.replayer.at_breakpoint(&self.breakpoints) {
                        seen += 1;
                        if seen == hits {
                            return Ok(Halt::Breakpoint);
                        }
                    }
                    if self.replayer.step()? == Stop::Ended {
                        return Ok(Halt::Ended);
                    }
                }
            }
        }
    }

    /// To `target`, forwards from here when it lies ahead, else from the
    /// start.
    pub fn goto(&mut self, target: Position) -> Result<Halt, ReplayError> {
        self.goto_reporting(target, &mut |_| {})
    }

    /// [`goto`](Self::goto), telling `progress` every exit it passes.
    pub fn goto_reporting(
        &mut self,
        target: Position,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Halt, ReplayError> {
        if self.replayer.position().is_none_or(|here| target < here) {
            self.replayer.restart_before(target.exit)?;
        } else {
            self.replayer.skip_toward(target.exit)?;
        }
        if self.replayer.run_to_exit(target.exit, progress)? == Stop::Ended {
            return Ok(Halt::Ended);
        }
        while self.position() < target {
            if self.replayer.step()? == Stop::Ended {
                return Ok(Halt::Ended);
            }
        }
        Ok(Halt::Done)
    }

    /// The position a step from which comes to `here` (not the start).
    fn previous_position(&mut self, here: Position) -> Result<Position, ReplayError> {
        if here.steps > 0 {
            return Ok(Position {
                steps: here.steps - 1,
                ..here
            });
        }
        // The step that came to this exit started in the interval before.
        let mut previous = Position::at_exit(here.exit - 1);
        self.goto(previous)?;
        loop {
            let ended = self.replayer.step()? == Stop::Ended;
            let reached = self.position();
            if reached >= here || ended {
                return Ok(previous);
            }
            previous = reached;
        }
    }

    fn changed_watch(&self, before: &[Vec<u8>]) -> Option<u64> {
        let after = self.replayer.watched_values(&self.watches);
        self.watches
            .iter()
            .zip(before.iter().zip(&after))
            .find(|(_, (before, after))| before != after)
            .map(|(watch, _)| watch.address)
    }

    /// Finds the position of the hit at `pc` that stopped a free run from
    /// `start` in the interval after exit `exit`: the first place there
    /// where the run would stop, after the disarmed step at `start`.
    fn find_hit(&mut self, start: Position, exit: u64, pc: u64) -> Result<(), ReplayError> {
        if exit == start.exit {
            self.goto(start)?;
            if self.replayer.at_breakpoint(&self.breakpoints) {
                self.replayer.step()?;
            }
        } else {
            self.goto(Position::at_exit(exit))?;
        }
        let mut only_pc = [None; BREAKPOINT_SLOTS];
        only_pc[0] = Some(pc);
        while !self.replayer.at_breakpoint(&only_pc) {
            if self.replayer.step()? == Stop::Ended {
                break;
            }
        }
        Ok(())
    }
}
