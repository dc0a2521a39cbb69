//! The shared disk image backend and the go-live test-and-set flag (see DESIGN.md §4).
