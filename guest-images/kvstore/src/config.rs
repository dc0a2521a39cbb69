//! The network configuration on the command line: `ip=A.B.C.D/N`
//! (required) and `gw=A.B.C.D` (optional).

use rt::cmdline;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

pub struct Config {
    /// The server's address and its subnet's prefix length.
    pub address: Ipv4Cidr,
    /// The default route's gateway.
    pub gateway: Option<Ipv4Address>,
}

/// Which parameter is missing or malformed.
pub enum ConfigError {
    Ip,
    Gateway,
}

impl ConfigError {
    /// The parameter's name as the command line spells it.
    pub fn key(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Gateway => "gw",
        }
    }
}

pub fn parse(cmdline: &[u8]) -> Result<Config, ConfigError> {
    let address = cmdline::param(cmdline, b"ip")
        .and_then(parse_cidr)
        .ok_or(ConfigError::Ip)?;
    let gateway = match cmdline::param(cmdline, b"gw") {
        None => None,
        Some(text) => Some(parse_unicast(text).ok_or(ConfigError::Gateway)?),
    };
    Ok(Config { address, gateway })
}

/// `A.B.C.D/N` with a unicast address (smoltcp refuses others) and N <= 32.
fn parse_cidr(text: &[u8]) -> Option<Ipv4Cidr> {
    let slash = text.iter().position(|&byte| byte == b'/')?;
    let (address, prefix) = text.split_at_checked(slash)?;
    let prefix = cmdline::parse_decimal(prefix.get(1..)?)?;
    let prefix = u8::try_from(prefix).ok().filter(|&len| len <= 32)?;
    Some(Ipv4Cidr::new(parse_unicast(address)?, prefix))
}

fn parse_unicast(text: &[u8]) -> Option<Ipv4Address> {
    let address = parse_ipv4(text)?;
    let unicast = !(address.is_unspecified() || address.is_broadcast() || address.is_multicast());
    unicast.then_some(address)
}

/// Dotted decimal: four numbers of at most three digits, each below 256.
fn parse_ipv4(text: &[u8]) -> Option<Ipv4Address> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&byte| byte == b'.');
    for octet in &mut octets {
        let part = parts.next().filter(|part| part.len() <= 3)?;
        *octet = u8::try_from(cmdline::parse_decimal(part)?).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Address::from(octets))
}
