//! Transactions, connection and server commands.

use alloc::vec::Vec;

use super::{c_string, wrong_arity};
use crate::glob;
use crate::int;
use crate::kv::{self, Ctx, Multi};
use crate::reply::Protocol;

/// The Redis version this server answers as.
pub(crate) const VERSION: &[u8] = b"7.2.0";

pub(super) fn multi(ctx: &mut Ctx, _args: &mut [Vec<u8>]) {
    if ctx.session.multi.is_some() {
        ctx.reply.error(b"ERR MULTI calls can not be nested");
        return;
    }
    ctx.session.multi = Some(Multi::default());
    ctx.reply.ok();
}

pub(super) fn exec(ctx: &mut Ctx, _args: &mut [Vec<u8>]) {
    kv::exec(ctx);
}

pub(super) fn discard(ctx: &mut Ctx, _args: &mut [Vec<u8>]) {
    if ctx.session.multi.take().is_none() {
        ctx.reply.error(b"ERR DISCARD without MULTI");
        return;
    }
    ctx.reply.ok();
}

pub(super) fn ping(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    match args {
        [_] => ctx.reply.simple(b"PONG"),
        [_, message] => ctx.reply.bulk(message),
        _ => ctx.reply.error(&wrong_arity(b"ping")),
    }
}

pub(super) fn echo(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    ctx.reply.bulk(&args[1]);
}

pub(super) fn quit(ctx: &mut Ctx, _args: &mut [Vec<u8>]) {
    ctx.reply.ok();
}

/// Redis's `validateClientName`: printable ASCII without spaces.
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&byte| (b'!'..=b'~').contains(&byte))
}

const BAD_NAME: &[u8] = b"ERR Client names cannot contain spaces, newlines or special characters.";

/// HELLO [protover [AUTH username password] [SETNAME clientname]].
pub(super) fn hello(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let mut proto = None;
    if let Some(version) = args.get(1) {
        match int::parse_i64(version) {
            None => {
                ctx.reply
                    .error(b"ERR Protocol version is not an integer or out of range");
                return;
            }
            Some(2) => proto = Some(Protocol::Resp2),
            Some(3) => proto = Some(Protocol::Resp3),
            Some(_) => {
                ctx.reply.error(b"NOPROTO unsupported protocol version");
                return;
            }
        }
    }
    let mut name = None;
    let mut index = 2;
    while let Some(option) = args.get(index) {
        let more = args.len() - 1 - index;
        if option.eq_ignore_ascii_case(b"auth") && more >= 2 {
            // The only user is `default`, without a password, as in a
            // Redis without `requirepass`: any password is right for it.
            if args[index + 1] != b"default" {
                ctx.reply
                    .error(b"WRONGPASS invalid username-password pair or user is disabled.");
                return;
            }
            index += 3;
        } else if option.eq_ignore_ascii_case(b"setname") && more >= 1 {
            if !valid_name(&args[index + 1]) {
                ctx.reply.error(BAD_NAME);
                return;
            }
            name = Some(args[index + 1].clone());
            index += 2;
        } else {
            let mut message = b"ERR Syntax error in HELLO option '".to_vec();
            message.extend_from_slice(c_string(option, usize::MAX));
            message.push(b'\'');
            ctx.reply.error(&message);
            return;
        }
    }
    if let Some(name) = name {
        ctx.session.name = Some(name).filter(|name| !name.is_empty());
    }
    if let Some(proto) = proto {
        ctx.session.proto = proto;
        ctx.reply.set_proto(proto);
    }
    let reply = &mut ctx.reply;
    reply.map(7);
    reply.bulk(b"server");
    reply.bulk(b"redis");
    reply.bulk(b"version");
    reply.bulk(VERSION);
    reply.bulk(b"proto");
    reply.integer(match ctx.session.proto {
        Protocol::Resp2 => 2,
        Protocol::Resp3 => 3,
    });
    reply.bulk(b"id");
    reply.integer(ctx.session.id as i64);
    reply.bulk(b"mode");
    reply.bulk(b"standalone");
    reply.bulk(b"role");
    reply.bulk(b"master");
    reply.bulk(b"modules");
    reply.array(0);
}

fn unknown_subcommand(ctx: &mut Ctx, command: &[u8], subcommand: &[u8]) {
    let mut message = b"ERR unknown subcommand '".to_vec();
    message.extend_from_slice(c_string(subcommand, 128));
    message.extend_from_slice(b"'. Try ");
    message.extend_from_slice(command);
    message.extend_from_slice(b" HELP.");
    ctx.reply.error(&message);
}

/// `args` has `arity` arguments (Redis's convention), else the error for
/// `command|subcommand` is replied.
fn subcommand_arity(ctx: &mut Ctx, args: &[Vec<u8>], arity: i32, full_name: &[u8]) -> bool {
    let count = args.len() as i32;
    let fits = if arity >= 0 {
        count == arity
    } else {
        count >= -arity
    };
    if !fits {
        ctx.reply.error(&wrong_arity(full_name));
    }
    fits
}

pub(super) fn client(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let sub = args[1].to_ascii_lowercase();
    match sub.as_slice() {
        b"setname" => {
            if !subcommand_arity(ctx, args, 3, b"client|setname") {
                return;
            }
            if !valid_name(&args[2]) {
                ctx.reply.error(BAD_NAME);
                return;
            }
            ctx.session.name = Some(args[2].clone()).filter(|name| !name.is_empty());
            ctx.reply.ok();
        }
        b"getname" => {
            if !subcommand_arity(ctx, args, 2, b"client|getname") {
                return;
            }
            match ctx.session.name.clone() {
                Some(name) => ctx.reply.bulk(&name),
                None => ctx.reply.null(),
            }
        }
        b"setinfo" => {
            if !subcommand_arity(ctx, args, 4, b"client|setinfo") {
                return;
            }
            let attribute = args[2].to_ascii_lowercase();
            let slot = match attribute.as_slice() {
                b"lib-name" => &mut ctx.session.lib_name,
                b"lib-ver" => &mut ctx.session.lib_version,
                _ => {
                    let mut message = b"ERR Unrecognized option '".to_vec();
                    message.extend_from_slice(c_string(&args[2], usize::MAX));
                    message.push(b'\'');
                    ctx.reply.error(&message);
                    return;
                }
            };
            if !valid_name(&args[3]) {
                let mut message = b"ERR ".to_vec();
                message.extend_from_slice(&attribute);
                message
                    .extend_from_slice(b" cannot contain spaces, newlines or special characters.");
                ctx.reply.error(&message);
                return;
            }
            *slot = Some(args[3].clone()).filter(|value| !value.is_empty());
            ctx.reply.ok();
        }
        b"id" => {
            if subcommand_arity(ctx, args, 2, b"client|id") {
                ctx.reply.integer(ctx.session.id as i64);
            }
        }
        _ => unknown_subcommand(ctx, b"CLIENT", &args[1]),
    }
}

/// COMMAND: enough for clients that ask (redis-cli asks for DOCS and copes
/// with none).
pub(super) fn command(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let Some(sub) = args.get(1).map(|sub| sub.to_ascii_lowercase()) else {
        ctx.reply.array(0);
        return;
    };
    match sub.as_slice() {
        b"count" => {
            if subcommand_arity(ctx, args, 2, b"command|count") {
                ctx.reply.integer(super::count() as i64);
            }
        }
        b"docs" => ctx.reply.map(0),
        b"info" => {
            ctx.reply.array(args.len() - 2);
            for _ in 2..args.len() {
                ctx.reply.null_array();
            }
        }
        _ => unknown_subcommand(ctx, b"COMMAND", &args[1]),
    }
}

/// CONFIG GET's parameters: what this server always does.
fn parameters(ctx: &Ctx) -> [(&'static [u8], Vec<u8>); 7] {
    let memory = ctx.clock.host.memory();
    let mut maxmemory = Vec::new();
    int::push_u64(&mut maxmemory, memory.limit as u64);
    let mut bulk = Vec::new();
    int::push_u64(&mut bulk, crate::MAX_BULK as u64);
    [
        // No snapshots: the log is the only persistence.
        (b"save", Vec::new()),
        (b"appendonly", b"yes".to_vec()),
        (b"appendfsync", b"always".to_vec()),
        (b"databases", b"1".to_vec()),
        (b"maxmemory", maxmemory),
        (b"maxmemory-policy", b"noeviction".to_vec()),
        (b"proto-max-bulk-len", bulk),
    ]
}

pub(super) fn config(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let sub = args[1].to_ascii_lowercase();
    match sub.as_slice() {
        b"get" => {
            if !subcommand_arity(ctx, args, -3, b"config|get") {
                return;
            }
            let parameters = parameters(ctx);
            let matched: Vec<&(&[u8], Vec<u8>)> = parameters
                .iter()
                .filter(|(name, _)| {
                    args[2..]
                        .iter()
                        .any(|pattern| glob::matches(pattern, name, true))
                })
                .collect();
            ctx.reply.map(matched.len());
            for (name, value) in matched {
                ctx.reply.bulk(name);
                ctx.reply.bulk(value);
            }
        }
        b"set" => {
            if !subcommand_arity(ctx, args, -4, b"config|set") {
                return;
            }
            let mut message =
                b"ERR Unknown option or number of arguments for CONFIG SET - '".to_vec();
            message.extend_from_slice(c_string(&args[2], usize::MAX));
            message.push(b'\'');
            ctx.reply.error(&message);
        }
        b"resetstat" => {
            if subcommand_arity(ctx, args, 2, b"config|resetstat") {
                ctx.reply.ok();
            }
        }
        _ => unknown_subcommand(ctx, b"CONFIG", &args[1]),
    }
}

/// INFO [section ...]: server, clients, memory, persistence, stats and
/// keyspace, with Redis's field names.
pub(super) fn info(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let wanted: Vec<Vec<u8>> = args[1..]
        .iter()
        .map(|section| section.to_ascii_lowercase())
        .collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|section| matches!(section.as_slice(), b"all" | b"default" | b"everything"));
    let show = |name: &[u8]| all || wanted.iter().any(|section| section == name);
    let mut text = Text::default();
    if show(b"server") {
        server_section(ctx, &mut text);
    }
    if show(b"clients") {
        let status = ctx.clock.host.status();
        text.section(b"Clients");
        text.field(b"connected_clients", status.connected_clients as u64);
        text.field(b"maxclients", crate::MAX_CLIENTS as u64);
        text.field(b"blocked_clients", 0);
    }
    if show(b"memory") {
        let memory = ctx.clock.host.memory();
        let status = ctx.clock.host.status();
        text.section(b"Memory");
        text.field(b"used_memory", memory.used as u64);
        text.field(b"used_memory_peak", memory.peak as u64);
        text.field(b"total_system_memory", status.heap_size as u64);
        text.field(b"maxmemory", memory.limit as u64);
        text.text(b"maxmemory_policy", b"noeviction");
    }
    if show(b"persistence") {
        persistence_section(ctx, &mut text);
    }
    if show(b"stats") {
        let stats = &ctx.stats;
        text.section(b"Stats");
        text.field(b"total_connections_received", stats.connections);
        text.field(b"total_commands_processed", stats.commands);
        text.field(b"expired_keys", stats.expired);
        text.field(b"keyspace_hits", stats.hits);
        text.field(b"keyspace_misses", stats.misses);
    }
    if show(b"keyspace") {
        text.section(b"Keyspace");
        let keys = ctx.db.live_len(&mut ctx.clock) as u64;
        if keys > 0 {
            let mut value = b"keys=".to_vec();
            int::push_u64(&mut value, keys);
            value.extend_from_slice(b",expires=");
            int::push_u64(&mut value, ctx.db.expiring() as u64);
            value.extend_from_slice(b",avg_ttl=0");
            text.text(b"db0", &value);
        }
    }
    ctx.reply.verbatim(&text.finish());
}

fn server_section(ctx: &mut Ctx, text: &mut Text) {
    let status = ctx.clock.host.status();
    let uptime = status.uptime_ms / 1000;
    text.section(b"Server");
    text.text(b"redis_version", VERSION);
    text.text(b"redis_mode", b"standalone");
    text.text(b"os", b"ftvm kvstore guest");
    text.field(b"arch_bits", 64);
    text.text(b"multiplexing_api", b"smoltcp");
    text.field(b"process_id", 1);
    text.field(b"tcp_port", 6379);
    text.field(b"uptime_in_seconds", uptime);
    text.field(b"uptime_in_days", uptime / 86_400);
    text.field(b"hz", 20);
}

fn persistence_section(ctx: &mut Ctx, text: &mut Text) {
    let status = ctx.clock.host.status();
    let ok = |good: bool| if good { &b"ok"[..] } else { b"err" };
    text.section(b"Persistence");
    text.field(b"loading", 0);
    text.field(b"async_loading", 0);
    text.field(
        b"rdb_changes_since_last_save",
        status.changes_since_compaction,
    );
    text.field(b"rdb_bgsave_in_progress", 0);
    text.field(b"rdb_last_save_time", status.last_compaction_unix);
    text.text(b"rdb_last_bgsave_status", b"ok");
    text.field(b"aof_enabled", 1);
    text.field(b"aof_rewrite_in_progress", u64::from(status.compacting));
    text.field(b"aof_rewrite_scheduled", 0);
    text.text(b"aof_last_bgrewrite_status", b"ok");
    text.field(b"aof_rewrites", status.compactions);
    text.text(b"aof_last_write_status", ok(status.last_write_ok));
    text.field(b"aof_current_size", status.log_size);
    text.field(b"aof_base_size", status.log_base_size);
    text.field(b"aof_pending_rewrite", 0);
    text.field(b"aof_buffer_length", 0);
    text.field(b"aof_pending_bio_fsync", 0);
    text.field(b"aof_delayed_fsync", 0);
}

/// INFO's text: `# Section` headers, `name:value` lines, a blank line
/// between sections.
#[derive(Default)]
struct Text(Vec<u8>);

impl Text {
    fn section(&mut self, name: &[u8]) {
        if !self.0.is_empty() {
            self.0.extend_from_slice(b"\r\n");
        }
        self.0.extend_from_slice(b"# ");
        self.0.extend_from_slice(name);
        self.0.extend_from_slice(b"\r\n");
    }

    fn text(&mut self, name: &[u8], value: &[u8]) {
        self.0.extend_from_slice(name);
        self.0.push(b':');
        self.0.extend_from_slice(value);
        self.0.extend_from_slice(b"\r\n");
    }

    fn field(&mut self, name: &[u8], value: u64) {
        let mut text = Vec::new();
        int::push_u64(&mut text, value);
        self.text(name, &text);
    }

    fn finish(self) -> Vec<u8> {
        self.0
    }
}
