//! A look at an ONNX Runtime library before it is loaded. A damaged file given with
//! `--ort-lib` (cut short by a failed copy, or not a library at all) can kill the process
//! inside the dynamic loader, with no message (exit 133, SIGTRAP). So the file is read
//! first: an ELF shared object for this machine's class, byte order and architecture,
//! every loadable segment and the section table inside the file, and `OrtGetApiBase` among
//! its dynamic symbols. The pinned library (verified by its sha256) skips this.
//!
//! Hand-written rather than the `object` crate: about a hundred lines read what is needed.

use std::path::Path;

/// The symbol ONNX Runtime's C API is reached through.
pub const ENTRY_SYMBOL: &str = "OrtGetApiBase";

const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ET_DYN: u16 = 3;
const PT_LOAD: u32 = 1;
const SHT_DYNSYM: u32 = 11;

/// `e_machine` of this build's architecture, where it is one ONNX Runtime ships for.
fn this_machine() -> Option<(u16, &'static str)> {
    if cfg!(target_arch = "x86_64") {
        Some((62, "x86-64"))
    } else if cfg!(target_arch = "aarch64") {
        Some((183, "AArch64"))
    } else if cfg!(target_arch = "powerpc64") {
        Some((21, "PowerPC64"))
    } else if cfg!(target_arch = "s390x") {
        Some((22, "s390x"))
    } else if cfg!(target_arch = "riscv64") {
        Some((243, "RISC-V"))
    } else {
        None
    }
}

/// Reads little- or big-endian integers at offsets of the file, refusing any read past
/// its end.
struct Reader<'a> {
    bytes: &'a [u8],
    little: bool,
}

impl Reader<'_> {
    fn take<const N: usize>(&self, at: u64) -> Result<[u8; N], String> {
        let start = usize::try_from(at).ok();
        start
            .and_then(|s| self.bytes.get(s..s.checked_add(N)?))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| self.past_end(at, N as u64))
    }

    fn u16(&self, at: u64) -> Result<u16, String> {
        let b = self.take::<2>(at)?;
        Ok(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }

    fn u32(&self, at: u64) -> Result<u32, String> {
        let b = self.take::<4>(at)?;
        Ok(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn u64(&self, at: u64) -> Result<u64, String> {
        let b = self.take::<8>(at)?;
        Ok(if self.little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }

    /// `len` bytes from `at`, all inside the file.
    fn range(&self, at: u64, len: u64, what: &str) -> Result<&[u8], String> {
        let end = at.checked_add(len).ok_or_else(|| self.past_end(at, len))?;
        usize::try_from(at)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| self.bytes.get(s..e))
            .ok_or_else(|| format!("{what}: {}", self.past_end(at, len)))
    }

    fn past_end(&self, at: u64, len: u64) -> String {
        format!(
            "it is cut short: bytes {at}..{} lie past its end ({} bytes); copy the library again",
            at.saturating_add(len),
            self.bytes.len()
        )
    }
}

/// Why `bytes` (the file at `path`) is not an ONNX Runtime library this process can load,
/// or `Ok` when it looks like one.
pub fn check_library_bytes(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 16 || &bytes[..4] != b"\x7fELF" {
        return Err("it is not a shared library (no ELF header)".into());
    }
    let want_class = if cfg!(target_pointer_width = "64") {
        ELFCLASS64
    } else {
        ELFCLASS32
    };
    let class = bytes[4];
    if class != want_class {
        return Err(format!(
            "it is a {}-bit library; this facebatch is {}-bit",
            if class == ELFCLASS64 { 64 } else { 32 },
            if want_class == ELFCLASS64 { 64 } else { 32 }
        ));
    }
    let little = bytes[5] == 1;
    if little != cfg!(target_endian = "little") {
        return Err("its byte order is not this machine's".into());
    }
    let r = Reader { bytes, little };
    if class == ELFCLASS32 {
        // 32-bit builds: the header is all that is read.
        return Ok(());
    }
    let e_type = r.u16(16)?;
    if e_type != ET_DYN {
        return Err(format!("it is not a shared library (ELF type {e_type})"));
    }
    let machine = r.u16(18)?;
    if let Some((want, name)) = this_machine()
        && machine != want
    {
        return Err(format!(
            "it is built for another architecture (ELF machine {machine}); this machine is {name}"
        ));
    }
    let (phoff, shoff) = (r.u64(32)?, r.u64(40)?);
    let (phentsize, phnum) = (r.u16(54)? as u64, r.u16(56)? as u64);
    let (shentsize, shnum) = (r.u16(58)? as u64, r.u16(60)? as u64);
    if phentsize < 56 || phnum == 0 {
        return Err("it has no program headers: not a loadable library".into());
    }
    r.range(phoff, phentsize * phnum, "program headers")?;
    let mut loads = 0;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if r.u32(ph)? == PT_LOAD {
            loads += 1;
            let (offset, filesz) = (r.u64(ph + 8)?, r.u64(ph + 32)?);
            r.range(offset, filesz, &format!("loadable segment {i}"))?;
        }
    }
    if loads == 0 {
        return Err("it has no loadable segment".into());
    }
    if shnum == 0 || shoff == 0 {
        // No section table (stripped of it): the dynamic string table is still in a
        // loadable segment, so the name is looked for in the file.
        let needle = format!("\0{ENTRY_SYMBOL}\0");
        return match bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            true => Ok(()),
            false => Err(no_entry()),
        };
    }
    if shentsize < 64 {
        return Err(format!("its section headers are {shentsize} bytes, not 64"));
    }
    r.range(shoff, shentsize * shnum, "section headers")?;
    for i in 0..shnum {
        let sh = shoff + i * shentsize;
        if r.u32(sh + 4)? != SHT_DYNSYM {
            continue;
        }
        let (offset, size, link, entsize) = (
            r.u64(sh + 24)?,
            r.u64(sh + 32)?,
            r.u32(sh + 40)? as u64,
            r.u64(sh + 56)?,
        );
        if entsize < 24 || link >= shnum {
            return Err("its dynamic symbol table is malformed".into());
        }
        let symbols = r.range(offset, size, "dynamic symbol table")?;
        let strs = shoff + link * shentsize;
        let names = r.range(r.u64(strs + 24)?, r.u64(strs + 32)?, "dynamic string table")?;
        let symtab = Reader {
            bytes: symbols,
            little,
        };
        for k in 0..size / entsize {
            let at = k * entsize;
            let name = symtab.u32(at)? as usize;
            let defined = symtab.u16(at + 6)? != 0;
            let matches = names
                .get(name..)
                .and_then(|n| n.strip_prefix(ENTRY_SYMBOL.as_bytes()))
                .is_some_and(|rest| rest.first() == Some(&0));
            if defined && matches {
                return Ok(());
            }
        }
        return Err(no_entry());
    }
    Err("it has no dynamic symbol table: not a shared library".into())
}

fn no_entry() -> String {
    format!("it does not export {ENTRY_SYMBOL}: not an ONNX Runtime library")
}

/// [`check_library_bytes`] of the file at `path`.
pub fn check_library(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("it cannot be read: {e}"))?;
    check_library_bytes(&bytes)
}

#[cfg(all(test, target_os = "linux", target_pointer_width = "64"))]
mod tests {
    use super::*;

    /// A minimal ELF64 shared object for this machine: one loadable segment, a section table
    /// with a dynamic symbol table naming `symbol`.
    fn library(symbol: &str) -> Vec<u8> {
        let le = cfg!(target_endian = "little");
        let put16 = |b: &mut Vec<u8>, at: usize, v: u16| {
            let x = if le { v.to_le_bytes() } else { v.to_be_bytes() };
            b[at..at + 2].copy_from_slice(&x);
        };
        let put32 = |b: &mut Vec<u8>, at: usize, v: u32| {
            let x = if le { v.to_le_bytes() } else { v.to_be_bytes() };
            b[at..at + 4].copy_from_slice(&x);
        };
        let put64 = |b: &mut Vec<u8>, at: usize, v: u64| {
            let x = if le { v.to_le_bytes() } else { v.to_be_bytes() };
            b[at..at + 8].copy_from_slice(&x);
        };
        // Layout: header (64), one program header (56) at 64, strings at 120, symbols
        // (two, 48) at 160, three section headers (192) at 256.
        let mut b = vec![0u8; 256 + 192];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = ELFCLASS64;
        b[5] = if le { 1 } else { 2 };
        b[6] = 1;
        put16(&mut b, 16, ET_DYN);
        put16(&mut b, 18, this_machine().map_or(0, |m| m.0));
        put64(&mut b, 32, 64);
        put64(&mut b, 40, 256);
        put16(&mut b, 54, 56);
        put16(&mut b, 56, 1);
        put16(&mut b, 58, 64);
        put16(&mut b, 60, 3);
        put32(&mut b, 64, PT_LOAD);
        put64(&mut b, 64 + 32, 256);
        let strings = format!("\0{symbol}\0");
        b[120..120 + strings.len()].copy_from_slice(strings.as_bytes());
        put32(&mut b, 160 + 24, 1); // symbol 1's name
        put16(&mut b, 160 + 24 + 6, 7); // defined in section 7
        let section = |b: &mut Vec<u8>, i: usize, ty: u32, off: u64, size: u64, link: u32| {
            let sh = 256 + i * 64;
            put32(b, sh + 4, ty);
            put64(b, sh + 24, off);
            put64(b, sh + 32, size);
            put32(b, sh + 40, link);
            put64(b, sh + 56, if ty == SHT_DYNSYM { 24 } else { 0 });
        };
        section(&mut b, 1, SHT_DYNSYM, 160, 48, 2);
        section(&mut b, 2, 3, 120, 40, 0);
        b
    }

    #[test]
    fn a_library_exporting_the_entry_point_passes() {
        check_library_bytes(&library(ENTRY_SYMBOL)).unwrap();
    }

    #[test]
    fn damaged_or_foreign_files_are_refused_with_the_reason() {
        let reason = |b: &[u8]| check_library_bytes(b).unwrap_err();
        assert!(reason(b"random bytes, not a library").contains("no ELF header"));
        let good = library(ENTRY_SYMBOL);
        assert!(reason(&good[..200]).contains("cut short"));
        assert!(reason(&library("OrtGetApiBaseX")).contains("does not export OrtGetApiBase"));
        assert!(reason(&library("SomethingElse")).contains("does not export"));
        let mut other_arch = good.clone();
        other_arch[18] ^= 0x40;
        assert!(reason(&other_arch).contains("another architecture"));
        let mut exe = good.clone();
        exe[16] = 2;
        exe[17] = 0;
        if cfg!(target_endian = "big") {
            exe.swap(16, 17);
        }
        assert!(reason(&exe).contains("not a shared library"));
        let mut thirty_two = good;
        thirty_two[4] = ELFCLASS32;
        assert!(reason(&thirty_two).contains("32-bit"));
    }
}
