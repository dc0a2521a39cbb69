//! Trace files and the replaying event source (see DESIGN.md §2).
