//! The container's devices: the nodes of `linux.devices`, and the device
//! rules of `linux.resources.devices` as cgroup v2 enforces them — an
//! eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the
//! container's cgroup, as runc, crun and youki do. The model is youki's
//! `libcgroups/src/v2/devices/` (its emulator and program): rules are
//! taken in order, a rule of type `a` resets the list to allow or deny
//! all, runc's default devices are appended, and the program checks the
//! rules from the last to the first, answering with the first that
//! matches. Only a spec that lists rules gets a program: without any,
//! access stays as the VM's.

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};
use thiserror::Error;

use crate::process::DeviceNode;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("linux.devices {path}: type {typ} cannot be created (b, c, u or p)")]
    NodeType { path: String, typ: String },
    #[error("linux.devices {0}: not an absolute path")]
    NodePath(String),
    #[error("linux.devices {path}: major {major} or minor {minor} out of range")]
    NodeNumber {
        path: String,
        major: i64,
        minor: i64,
    },
    #[error("linux.resources.devices: access {0:?} is not made of r, w and m")]
    Access(String),
    #[error("linux.resources.devices: {0} devices cannot be filtered")]
    RuleType(&'static str),
}

/// The nodes of `linux.devices`, checked; default mode 0666, owner root.
pub fn nodes(devices: &[LinuxDevice]) -> Result<Vec<DeviceNode>, DeviceError> {
    devices
        .iter()
        .map(|d| {
            let path = d.path().to_string_lossy().into_owned();
            if !d.path().is_absolute() || d.path().components().any(|c| c.as_os_str() == "..") {
                return Err(DeviceError::NodePath(path));
            }
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
                LinuxDeviceType::B => libc::S_IFBLK,
                LinuxDeviceType::P => libc::S_IFIFO,
                LinuxDeviceType::A => {
                    return Err(DeviceError::NodeType {
                        path,
                        typ: "a".into(),
                    })
                }
            };
            let number = |n: i64| u32::try_from(n).ok();
            let (Some(major), Some(minor)) = (number(d.major()), number(d.minor())) else {
                return Err(DeviceError::NodeNumber {
                    path,
                    major: d.major(),
                    minor: d.minor(),
                });
            };
            Ok(DeviceNode {
                path,
                mode: kind | (d.file_mode().unwrap_or(0o666) & 0o7777),
                major,
                minor,
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            })
        })
        .collect()
}

/// One rule the program checks: None is "any".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    /// BPF_DEVCG_DEV_BLOCK (1) or BPF_DEVCG_DEV_CHAR (2).
    typ: u32,
    major: Option<u32>,
    minor: Option<u32>,
    /// BPF_DEVCG_ACC_MKNOD (1), _READ (2), _WRITE (4).
    access: u32,
    allow: bool,
}

const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// runc's default allowed devices (`specconv.AllowedDevices`): mknod of
/// any node, the standard character devices, ptys and tun.
const DEFAULT_RULES: &[(u32, Option<u32>, Option<u32>, u32)] = &[
    (DEV_CHAR, None, None, ACC_MKNOD),
    (DEV_BLOCK, None, None, ACC_MKNOD),
    (DEV_CHAR, Some(1), Some(3), ACC_ALL),
    (DEV_CHAR, Some(1), Some(8), ACC_ALL),
    (DEV_CHAR, Some(1), Some(7), ACC_ALL),
    (DEV_CHAR, Some(5), Some(0), ACC_ALL),
    (DEV_CHAR, Some(1), Some(5), ACC_ALL),
    (DEV_CHAR, Some(1), Some(9), ACC_ALL),
    (DEV_CHAR, Some(136), None, ACC_ALL),
    (DEV_CHAR, Some(5), Some(2), ACC_ALL),
    (DEV_CHAR, Some(10), Some(200), ACC_ALL),
];

fn access_bits(access: &str) -> Result<u32, DeviceError> {
    access.chars().try_fold(0, |bits, c| {
        Ok(bits
            | match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => return Err(DeviceError::Access(access.to_string())),
            })
    })
}

/// The rules in effect after `rules` and runc's defaults: (default allow,
/// rules in order). None when the spec lists no rules.
fn emulate(rules: &[LinuxDeviceCgroup]) -> Result<Option<(bool, Vec<Rule>)>, DeviceError> {
    if rules.is_empty() {
        return Ok(None);
    }
    let mut default_allow = false;
    let mut kept = Vec::new();
    let number = |n: Option<i64>| n.filter(|n| *n >= 0).map(|n| n as u32);
    for rule in rules {
        let typ = match rule.typ().unwrap_or_default() {
            LinuxDeviceType::A => {
                default_allow = rule.allow();
                kept.clear();
                continue;
            }
            LinuxDeviceType::C | LinuxDeviceType::U => DEV_CHAR,
            LinuxDeviceType::B => DEV_BLOCK,
            LinuxDeviceType::P => return Err(DeviceError::RuleType("FIFO (p)")),
        };
        let Some(access) = rule.access().as_deref() else {
            continue;
        };
        kept.push(Rule {
            typ,
            major: number(rule.major()),
            minor: number(rule.minor()),
            access: access_bits(access)?,
            allow: rule.allow(),
        });
    }
    kept.extend(
        DEFAULT_RULES
            .iter()
            .map(|&(typ, major, minor, access)| Rule {
                typ,
                major,
                minor,
                access,
                allow: true,
            }),
    );
    Ok(Some((default_allow, kept)))
}

/// eBPF instruction encodings (linux/bpf_common.h, linux/bpf.h).
mod insn {
    const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    const ALU_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
    const ALU_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
    const ALU_MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
    const ALU_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
    const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
    const JMP_JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
    const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

    pub fn encode(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
        let mut bytes = [0u8; 8];
        bytes[0] = code;
        bytes[1] = (src << 4) | (dst & 0x0f);
        bytes[2..4].copy_from_slice(&off.to_le_bytes());
        bytes[4..8].copy_from_slice(&imm.to_le_bytes());
        u64::from_le_bytes(bytes)
    }
    pub fn load_word(dst: u8, src: u8, off: i16) -> u64 {
        encode(LDX_MEM_W, dst, src, off, 0)
    }
    pub fn and(dst: u8, imm: i32) -> u64 {
        encode(ALU_AND_K, dst, 0, 0, imm)
    }
    pub fn shift_right(dst: u8, imm: i32) -> u64 {
        encode(ALU_RSH_K, dst, 0, 0, imm)
    }
    pub fn mov(dst: u8, imm: i32) -> u64 {
        encode(ALU_MOV_K, dst, 0, 0, imm)
    }
    pub fn mov_reg(dst: u8, src: u8) -> u64 {
        encode(ALU_MOV_X, dst, src, 0, 0)
    }
    pub fn jump_if_not(dst: u8, imm: i32, off: i16) -> u64 {
        encode(JMP_JNE_K, dst, 0, off, imm)
    }
    pub fn jump_if_not_reg(dst: u8, src: u8, off: i16) -> u64 {
        encode(JMP_JNE_X, dst, src, off, 0)
    }
    pub fn exit() -> u64 {
        encode(JMP_EXIT, 0, 0, 0, 0)
    }
}

/// The program for `rules` (youki's `Program::from_rules`). Its context
/// is `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32
/// minor; }`, access_type being type | access << 16; it returns 1 to
/// allow.
fn program(default_allow: bool, rules: &[Rule]) -> Vec<u64> {
    let mut p = vec![
        insn::load_word(2, 1, 0),
        insn::and(2, 0xffff),
        insn::load_word(3, 1, 0),
        insn::shift_right(3, 16),
        insn::load_word(4, 1, 4),
        insn::load_word(5, 1, 8),
    ];
    for rule in rules.iter().rev() {
        let partial_access = rule.access != ACC_ALL;
        let count = 1
            + if partial_access { 3 } else { 0 }
            + rule.major.is_some() as usize
            + rule.minor.is_some() as usize
            + 2;
        // From the instruction at `i` of this rule to the next rule
        // (offsets count from the following instruction).
        let next_rule = |i: usize| (count - i - 1) as i16;
        let mut out = Vec::with_capacity(count);
        out.push(insn::jump_if_not(2, rule.typ as i32, next_rule(0)));
        if partial_access {
            // (access & rule.access) != access: not this rule.
            out.push(insn::mov_reg(1, 3));
            out.push(insn::and(1, rule.access as i32));
            out.push(insn::jump_if_not_reg(1, 3, next_rule(out.len())));
        }
        if let Some(major) = rule.major {
            out.push(insn::jump_if_not(4, major as i32, next_rule(out.len())));
        }
        if let Some(minor) = rule.minor {
            out.push(insn::jump_if_not(5, minor as i32, next_rule(out.len())));
        }
        out.push(insn::mov(0, rule.allow as i32));
        out.push(insn::exit());
        debug_assert_eq!(out.len(), count);
        p.extend(out);
    }
    p.push(insn::mov(0, default_allow as i32));
    p.push(insn::exit());
    p
}

/// The device program of `rules`, None when there are none.
pub fn filter(rules: &[LinuxDeviceCgroup]) -> Result<Option<Vec<u64>>, DeviceError> {
    Ok(emulate(rules)?.map(|(default_allow, rules)| program(default_allow, &rules)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` as the kernel would, for the few instructions it uses.
    fn run(prog: &[u64], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [typ | access << 16, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let b = prog[pc].to_le_bytes();
            let (code, dst, src) = (b[0], (b[1] & 0x0f) as usize, (b[1] >> 4) as usize);
            let off = i16::from_le_bytes([b[2], b[3]]) as isize;
            let imm = i32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            pc += 1;
            match code {
                0x61 => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = ctx[off as usize / 4] as u64;
                }
                0x54 => r[dst] = (r[dst] as u32 & imm as u32) as u64,
                0x74 => r[dst] = ((r[dst] as u32) >> imm) as u64,
                0xb4 => r[dst] = imm as u32 as u64,
                0xbc => r[dst] = r[src] as u32 as u64,
                0x55 if r[dst] != imm as u32 as u64 => pc = (pc as isize + off) as usize,
                0x5d if r[dst] != r[src] => pc = (pc as isize + off) as usize,
                0x55 | 0x5d => {}
                0x95 => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn no_rules_no_program() {
        assert_eq!(filter(&[]).unwrap(), None);
    }

    #[test]
    fn runc_spec_default_denies_all_but_the_standard_devices() {
        let prog = filter(&rules(r#"[{"allow":false,"access":"rwm"}]"#))
            .unwrap()
            .unwrap();
        let rw = ACC_READ | ACC_WRITE;
        assert_eq!(run(&prog, DEV_CHAR, rw, 1, 3), 1, "/dev/null");
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 9), 1, "/dev/urandom");
        assert_eq!(run(&prog, DEV_CHAR, rw, 136, 4), 1, "a pty");
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 1), 0, "/dev/mem");
        assert_eq!(run(&prog, DEV_BLOCK, ACC_READ, 8, 0), 0, "a disk");
        assert_eq!(run(&prog, DEV_BLOCK, ACC_MKNOD, 8, 0), 1, "mknod of any");
    }

    #[test]
    fn later_rules_win_and_access_is_partial() {
        let prog = filter(&rules(
            r#"[{"allow":true,"access":"rwm"},
                {"allow":false,"type":"c","major":1,"minor":7,"access":"rw"},
                {"allow":true,"type":"c","major":10,"access":"r"}]"#,
        ))
        .unwrap()
        .unwrap();
        // The defaults, appended, allow /dev/full again (runc's order).
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 7), 1);
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 10, 1), 1);
        assert_eq!(run(&prog, DEV_BLOCK, ACC_WRITE, 8, 1), 1, "allow all");

        let prog = filter(&rules(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":10,"access":"r"},
                {"allow":false,"type":"c","major":1,"minor":3,"access":"w"}]"#,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 10, 1), 1);
        assert_eq!(run(&prog, DEV_CHAR, ACC_WRITE, 10, 1), 0, "only r");
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 10, 1), 0);
    }

    #[test]
    fn an_a_rule_resets_the_list() {
        let prog = filter(&rules(
            r#"[{"allow":true,"type":"c","major":4,"access":"rwm"},
                {"allow":false,"type":"a","access":"rwm"}]"#,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 4, 1), 0);
    }

    #[test]
    fn bad_rules_and_nodes_name_their_field() {
        let err = filter(&rules(r#"[{"allow":true,"type":"c","access":"rx"}]"#)).unwrap_err();
        assert!(
            err.to_string().starts_with("linux.resources.devices"),
            "{err}"
        );
        let devices: Vec<LinuxDevice> =
            serde_json::from_str(r#"[{"path":"/dev/x","type":"a","major":1,"minor":1}]"#).unwrap();
        let err = nodes(&devices).unwrap_err();
        assert!(err.to_string().starts_with("linux.devices /dev/x"), "{err}");
        let devices: Vec<LinuxDevice> =
            serde_json::from_str(r#"[{"path":"dev/x","type":"c","major":1,"minor":1}]"#).unwrap();
        assert!(nodes(&devices).is_err());
    }

    #[test]
    fn nodes_get_their_mode_and_owner() {
        let devices: Vec<LinuxDevice> = serde_json::from_str(
            r#"[{"path":"/dev/mydevice","type":"c","major":1,"minor":5,"fileMode":416,"uid":7,"gid":8},
                {"path":"/dev/fifo","type":"p","major":0,"minor":0}]"#,
        )
        .unwrap();
        let nodes = nodes(&devices).unwrap();
        assert_eq!(
            nodes[0],
            DeviceNode {
                path: "/dev/mydevice".into(),
                mode: libc::S_IFCHR | 0o640,
                major: 1,
                minor: 5,
                uid: 7,
                gid: 8,
            }
        );
        assert_eq!(nodes[1].mode, libc::S_IFIFO | 0o666);
    }
}
