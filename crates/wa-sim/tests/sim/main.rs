//! The simulator's tests, one binary: each module a part of the simulator, each test its own simulator.

mod appstate;
mod binary;
mod common;
mod faults;
mod groups;
mod history;
mod living;
mod messaging;
mod other_clients;
mod pairing;
mod people;
mod routing;
mod scenario;
