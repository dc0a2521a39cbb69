//! A debugging session over a replay: breakpoints, and moving forwards and
//! backwards between positions.
//!
//! Going back means going to an earlier [`Position`]: the replay starts
//! again from the beginning and runs forward to it, exits freely and the
//! last steps one by one. Every stop is at an exact position: a breakpoint
//! that stops a free run (whose steps nobody counted) is found again by
//! running to the start of its interval and stepping to it.

use super::replayer::{Position, ReplayError, Replayer, Stop};
use crate::vstate::BREAKPOINT_SLOTS;

/// Why the session stopped moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// A step, forwards or backwards, is done; or a goto arrived.
    Done,
    /// At a breakpoint.
    Breakpoint,
    /// The caller interrupted a forward run.
    Interrupted,
    /// Going backwards reached the start of the replay.
    Start,
    /// The replay ended (see [`Replayer::ending`]).
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("all {BREAKPOINT_SLOTS} hardware breakpoints are in use")]
    NoBreakpointSlot,
}

#[derive(Debug)]
pub struct Session {
    replayer: Replayer,
    breakpoints: [Option<u64>; BREAKPOINT_SLOTS],
}

impl Session {
    pub fn new(replayer: Replayer) -> Self {
        Self {
            replayer,
            breakpoints: [None; BREAKPOINT_SLOTS],
        }
    }

    pub fn replayer(&self) -> &Replayer {
        &self.replayer
    }

    pub fn into_replayer(self) -> Replayer {
        self.replayer
    }

    /// Where the session is. Exact: every stop is resolved.
    pub fn position(&self) -> Position {
        self.replayer
            .position()
            .expect("a session resolves every stop to its position")
    }

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

    /// One step forward.
    pub fn step(&mut self) -> Result<Halt, ReplayError> {
        Ok(match self.replayer.step()? {
            Stop::Ended => Halt::Ended,
            _ => Halt::Done,
        })
    }

    /// Forward to the next breakpoint or the end; `interrupted` is asked at
    /// every exit.
    pub fn resume(&mut self, interrupted: &mut dyn FnMut() -> bool) -> Result<Halt, ReplayError> {
        let start = self.position();
        match self
            .replayer
            .continue_to(&self.breakpoints, None, interrupted)?
        {
            Stop::Breakpoint(pc) => {
                let exit = self.replayer.exit();
                self.find_hit(start, exit, pc)?;
                Ok(Halt::Breakpoint)
            }
            Stop::Interrupted => Ok(Halt::Interrupted),
            Stop::Ended => Ok(Halt::Ended),
            Stop::Arrived => unreachable!("a run without a last exit arrives nowhere"),
        }
    }

    /// One step back: to the position a step from which comes here.
    pub fn reverse_step(&mut self) -> Result<Halt, ReplayError> {
        let here = self.position();
        if here.steps > 0 {
            self.goto(Position {
                steps: here.steps - 1,
                ..here
            })?;
            return Ok(Halt::Done);
        }
        if here.exit == 0 {
            return Ok(Halt::Start);
        }
        // The step that came to this exit started in the interval before.
        let mut previous = Position::at_exit(here.exit - 1);
        self.goto(previous)?;
        loop {
            self.replayer.step()?;
            let reached = self.position();
            if reached >= here {
                break;
            }
            previous = reached;
        }
        self.goto(previous)?;
        Ok(Halt::Done)
    }

    /// Back to the last breakpoint hit before here, or to the start.
    pub fn reverse_resume(&mut self) -> Result<Halt, ReplayError> {
        let here = self.position();
        self.replayer.restart()?;
        // Free runs up to this exit, noting the last interval with hits and
        // how many it had; the stretch of this exit before here is stepped.
        let mut last: Option<(u64, u64)> = None;
        loop {
            match self
                .replayer
                .continue_to(&self.breakpoints, Some(here.exit), &mut || false)?
            {
                Stop::Breakpoint(_) => {
                    let exit = self.replayer.exit();
                    last = Some(match last {
                        Some((interval, hits)) if interval == exit => (exit, hits + 1),
                        _ => (exit, 1),
                    });
                }
                Stop::Arrived => break,
                Stop::Ended | Stop::Interrupted => {
                    unreachable!("the replay went through here before")
                }
            }
        }
        let mut hit_here = None;
        while self.position() < here {
            if self.at_hit(None)? {
                hit_here = Some(self.position());
            }
            self.replayer.step()?;
        }
        if let Some(position) = hit_here {
            self.goto(position)?;
            return Ok(Halt::Breakpoint);
        }
        let Some((interval, hits)) = last else {
            self.goto(Position::at_exit(0))?;
            return Ok(Halt::Start);
        };
        self.goto(Position::at_exit(interval))?;
        let mut seen = 0;
        loop {
            if self.at_hit(None)? {
                seen += 1;
                if seen == hits {
                    return Ok(Halt::Breakpoint);
                }
            }
            self.replayer.step()?;
        }
    }

    /// To `target`, forwards from here when it lies ahead, else from the
    /// start.
    pub fn goto(&mut self, target: Position) -> Result<Halt, ReplayError> {
        if self.replayer.position().is_none_or(|here| target < here) {
            self.replayer.restart()?;
        }
        if self.replayer.run_to_exit(target.exit)? == Stop::Ended {
            return Ok(Halt::Ended);
        }
        while self.position() < target {
            if self.replayer.step()? == Stop::Ended {
                return Ok(Halt::Ended);
            }
        }
        Ok(Halt::Done)
    }

    /// Whether a free run with breakpoints armed stops here: the next
    /// instruction is at `pc` (any breakpoint when `None`), and no interrupt
    /// comes first.
    fn at_hit(&self, pc: Option<u64>) -> Result<bool, ReplayError> {
        let rip = self.replayer.registers()?.regs.rip;
        let armed = match pc {
            Some(pc) => rip == pc,
            None => self.breakpoints.contains(&Some(rip)),
        };
        Ok(armed && self.replayer.queued_interrupt()?.is_none())
    }

    /// Finds the position of the hit at `pc` that stopped a free run from
    /// `start` in the interval after exit `exit`: the first place there
    /// where the run would stop, after the disarmed step at `start`.
    fn find_hit(&mut self, start: Position, exit: u64, pc: u64) -> Result<(), ReplayError> {
        if exit == start.exit {
            self.goto(start)?;
            if self.at_hit(None)? {
                self.replayer.step()?;
            }
        } else {
            self.goto(Position::at_exit(exit))?;
        }
        while !self.at_hit(Some(pc))? {
            self.replayer.step()?;
        }
        Ok(())
    }
}
