// The VMCS interface of bhyve 13063/13064: one 4 KiB region per VMCS, its address and launch
// state in the per-vCPU VMX state, and five operations (Initialize, Load, Clear, Read, Write)
// addressed by SDM field encoding. Every failure is a bug, so every failure is fatal: a
// VmmPanicException that names the field and the state. Callers never see error codes.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace Hyve.Vmm.Vmx;

/// <summary>
/// A VMCS region: exactly 4 KiB. Bytes 0-3 hold the revision identifier and 4-7 the abort
/// indicator, as the SDM lays them out; the data area after them is this implementation's own
/// (one 8-byte slot per field, by width, type and index).
/// </summary>
public sealed class VmcsRegion
{
    /// <summary>Size of every region.</summary>
    public const int Size = 4096;

    /// <summary>The revision identifier Hyve's VMX reports (IA32_VMX_BASIC bits 30:0).</summary>
    public const uint Revision = 0x4879_7665 & 0x7FFF_FFFF;

    private readonly byte[] _bytes = new byte[Size];

    /// <summary>A region at guest- or host-physical <paramref name="address"/> (a name for messages).</summary>
    public VmcsRegion(ulong address) => Address = address;

    /// <summary>Where the region lives (for messages and VMPTRST).</summary>
    public ulong Address { get; }

    /// <summary>The region's bytes.</summary>
    public Span<byte> Bytes => _bytes;

    /// <summary>The revision identifier in bytes 0-3.</summary>
    public uint RevisionId => BinaryPrimitives.ReadUInt32LittleEndian(_bytes);

    // Slot of a (full) field: 8 + (group * 31 + index) * 8, group = width * 4 + type.
    private static int Slot(uint encoding)
    {
        int group = ((int)VmcsField.Width(encoding) << 2) | (int)VmcsField.Type(encoding);
        int index = VmcsField.Index(encoding);
        return 8 + ((group * 31) + index) * 8;
    }

    /// <summary>The processor's raw access to a field, with no checks: the software CPU uses it to
    /// store exit information; the vmm goes through <see cref="Vmcs"/>.</summary>
    public ulong Load(uint encoding) => BinaryPrimitives.ReadUInt64LittleEndian(_bytes.AsSpan(Slot(encoding & ~1u)));

    /// <summary>The processor's raw store of a field.</summary>
    public void Store(uint encoding, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(_bytes.AsSpan(Slot(encoding & ~1u)), value);

    internal void Reset(uint revision)
    {
        Array.Clear(_bytes);
        BinaryPrimitives.WriteUInt32LittleEndian(_bytes, revision);
    }
}

/// <summary>A vCPU's VMX state: the current VMCS and the launch state of the regions it has used.</summary>
public sealed class VmxState
{
    private readonly HashSet<VmcsRegion> _launched = [];

    /// <summary>The current VMCS, or null.</summary>
    public VmcsRegion? Current { get; internal set; }

    /// <summary>Whether <paramref name="region"/> has been launched since it was last cleared.</summary>
    public bool IsLaunched(VmcsRegion region) => _launched.Contains(region);

    internal void SetLaunched(VmcsRegion region, bool launched)
    {
        if (launched)
            _launched.Add(region);
        else
            _launched.Remove(region);
    }
}

/// <summary>The vmm's operations on VMCSs.</summary>
public static class Vmcs
{
    /// <summary>Prepares <paramref name="region"/> for use: revision identifier set, data cleared,
    /// launch state clear (what software does before the first VMCLEAR/VMPTRLD).</summary>
    public static void Initialize(VmxState state, VmcsRegion region)
    {
        region.Reset(VmcsRegion.Revision);
        state.SetLaunched(region, false);
        if (state.Current == region)
            state.Current = null;
    }

    /// <summary>VMCLEAR: the launch state becomes clear; a current region stops being current.</summary>
    public static void Clear(VmxState state, VmcsRegion region)
    {
        if (region.RevisionId != VmcsRegion.Revision)
            throw Panic(state, $"VMCLEAR of the region at {region.Address:X}: revision {region.RevisionId:X} is not {VmcsRegion.Revision:X}");
        state.SetLaunched(region, false);
        if (state.Current == region)
            state.Current = null;
    }

    /// <summary>VMPTRLD: <paramref name="region"/> becomes the current VMCS.</summary>
    public static void Load(VmxState state, VmcsRegion region)
    {
        if (region.RevisionId != VmcsRegion.Revision)
            throw Panic(state, $"VMPTRLD of the region at {region.Address:X}: revision {region.RevisionId:X} is not {VmcsRegion.Revision:X}");
        state.Current = region;
    }

    /// <summary>VMREAD of <paramref name="field"/> in the current VMCS. A 64-bit field's high-half
    /// encoding reads its upper 32 bits; narrower fields come back zero-extended.</summary>
    public static ulong Read(VmxState state, uint field)
    {
        VmcsRegion region = Current(state, field, "VMREAD");
        ulong v = region.Load(field);
        if (VmcsField.High(field))
            return v >> 32;
        return Width(field) switch
        {
            VmcsWidth.Bits16 => v & 0xFFFF,
            VmcsWidth.Bits32 => v & 0xFFFF_FFFF,
            _ => v,
        };
    }

    /// <summary>VMWRITE of <paramref name="value"/> to <paramref name="field"/> in the current VMCS.
    /// Read-only fields and values wider than the field are refused (fatally).</summary>
    public static void Write(VmxState state, uint field, ulong value)
    {
        VmcsRegion region = Current(state, field, "VMWRITE");
        if (VmcsField.Type(field) == VmcsType.ReadOnly)
            throw Panic(state, $"VMWRITE of {Name(field)}: a read-only VM-exit information field");
        ulong limit = VmcsField.High(field) ? 0xFFFF_FFFF : Width(field) switch
        {
            VmcsWidth.Bits16 => 0xFFFF,
            VmcsWidth.Bits32 => 0xFFFF_FFFF,
            _ => ulong.MaxValue,
        };
        if (value > limit)
            throw Panic(state, $"VMWRITE of {value:X} to {Name(field)}: wider than the field");
        if (VmcsField.High(field))
            value = (region.Load(field) & 0xFFFF_FFFF) | (value << 32);
        region.Store(field, value);
    }

    /// <summary>Checks a VM entry: VMLAUNCH needs a clear launch state, VMRESUME a launched one;
    /// a successful entry marks the current VMCS launched.</summary>
    public static void Enter(VmxState state, bool resume)
    {
        VmcsRegion region = state.Current ?? throw Panic(state, (resume ? "VMRESUME" : "VMLAUNCH") + " without a current VMCS");
        bool launched = state.IsLaunched(region);
        if (resume && !launched)
            throw Panic(state, $"VMRESUME of the VMCS at {region.Address:X}, which is not launched");
        if (!resume && launched)
            throw Panic(state, $"VMLAUNCH of the VMCS at {region.Address:X}, which is already launched");
        state.SetLaunched(region, true);
    }

    private static VmcsWidth Width(uint field) => VmcsField.Width(field);

    private static VmcsRegion Current(VmxState state, uint field, string op)
    {
        if (!VmcsField.IsKnown(field))
            throw Panic(state, $"{op} of unknown field {field:X4}");
        if (VmcsField.High(field) && Width(field) != VmcsWidth.Bits64)
            throw Panic(state, $"{op} of {field:X4}: a high-half access to a field that is not 64-bit");
        return state.Current ?? throw Panic(state, $"{op} of {Name(field)} without a current VMCS");
    }

    private static string Name(uint field)
    {
        foreach (System.Reflection.FieldInfo f in typeof(VmcsField).GetFields())
        {
            if (f.IsLiteral && f.GetRawConstantValue() is uint v && v == (field & ~1u))
                return $"{f.Name}{(VmcsField.High(field) ? " (high)" : "")} ({field:X4})";
        }
        return $"field {field:X4}";
    }

    private static VmmPanicException Panic(VmxState state, string what) =>
        new($"VMCS: {what} [current VMCS: {(state.Current == null ? "none" : $"{state.Current.Address:X}, {(state.IsLaunched(state.Current) ? "launched" : "clear")}")}]");
}
