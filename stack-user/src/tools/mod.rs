//! Tools built on the stack: the load generator ([`load`]), the SYN/ACK/RST
//! flood generator ([`flood`]), the kernel-socket baseline server
//! ([`kserve`]), the two-namespace [`testbed`], the interface check
//! ([`doctor`]), every benchmark ([`bench`]) and the [`guard`] on where
//! load and flood may send.

pub mod bench;
pub mod doctor;
pub mod flood;
pub mod guard;
pub mod kserve;
pub mod load;
pub mod testbed;
