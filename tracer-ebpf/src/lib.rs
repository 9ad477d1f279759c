#![no_std]
//! Intentionally empty: the programs live in the `mapleak` binary target.
