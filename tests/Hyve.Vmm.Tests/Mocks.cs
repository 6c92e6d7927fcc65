// Mock vmm devices and device half for driving the emulation context in tests (the mock vCPU is
// in Hyve.TestSupport).
using System;
using System.Collections.Generic;
using Hyve.Vmm.Emulation;

namespace Hyve.Vmm.Tests;

/// <summary>Vmm devices that own one address range and record what they saw.</summary>
public sealed class MockVmmDevices(ulong start = 0, ulong size = 0) : IVmmDevices
{
    public Dictionary<ulong, ulong> Registers { get; } = [];

    public List<MmioAccess> Seen { get; } = [];

    private bool Owns(ulong gpa) => gpa >= start && gpa < start + size;

    public bool TryRead(ulong gpa, int bytes, out ulong value)
    {
        value = 0;
        if (!Owns(gpa))
            return false;
        value = Registers.TryGetValue(gpa, out ulong v) ? v : 0;
        Seen.Add(new MmioAccess(gpa, (byte)bytes, false, value));
        return true;
    }

    public bool TryWrite(ulong gpa, int bytes, ulong value)
    {
        if (!Owns(gpa))
            return false;
        Registers[gpa] = value;
        Seen.Add(new MmioAccess(gpa, (byte)bytes, true, value));
        return true;
    }
}

/// <summary>The device half: byte-addressed device memory that answers single requests.</summary>
public sealed class MockDeviceHalf
{
    public Dictionary<ulong, byte> Memory { get; } = [];

    public List<MmioAccess> Requests { get; } = [];

    public MmioAccess Answer(MmioAccess request)
    {
        Requests.Add(request);
        if (request.Write)
        {
            for (int i = 0; i < request.Bytes; i++)
                Memory[request.Gpa + (ulong)i] = (byte)(request.Data >> (8 * i));
            return request;
        }
        ulong v = 0;
        for (int i = 0; i < request.Bytes; i++)
            v |= (ulong)(Memory.TryGetValue(request.Gpa + (ulong)i, out byte b) ? b : (byte)0) << (8 * i);
        return request with { Data = v };
    }

    public void Store(ulong gpa, ulong value, int bytes)
    {
        for (int i = 0; i < bytes; i++)
            Memory[gpa + (ulong)i] = (byte)(value >> (8 * i));
    }

    /// <summary>Runs passes until the instruction completes or falls back, answering each request.</summary>
    public (VieStatus Status, int Passes) Run(Vie vie, IVieCpu cpu, IVmmDevices devices, IGuestMemory? memory = null)
    {
        for (int passes = 1; passes < 20; passes++)
        {
            VieStatus st = vie.Emulate(cpu, devices, memory);
            if (st != VieStatus.NeedsDevice)
                return (st, passes);
            FulfillResult r = vie.Fulfill(Answer(vie.Pending));
            if (r != FulfillResult.Ok)
                throw new InvalidOperationException($"fulfil rejected: {r}");
        }
        throw new InvalidOperationException("no progress after 20 passes");
    }
}
