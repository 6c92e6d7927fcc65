// A backend made of VMX vCPUs: each gets a VMCS and a VMX processor (the software CPU's, or
// hardware's) to run it.
using System;
using Hyve.Vmm.Backend;

namespace Hyve.Vmm.Vmx;

/// <summary>Creates <see cref="VmxVcpu"/>s over processors from a factory.</summary>
public sealed class VmxBackend(GuestMemory memory, Func<int, IVmxProcessor> processor, string name = "vmx") : IBackend
{
    /// <inheritdoc/>
    public string Name => name;

    /// <inheritdoc/>
    public IBackendVcpu CreateVcpu(int id) =>
        // Each VMCS gets its own (notional) 4 KiB page address for messages and VMPTRST.
        new VmxVcpu(processor(id), 0xFFFF_0000_0000_0000UL + ((ulong)id << 12)) { Memory = memory };
}
