// The vmm's fatal error: a state that only a bug in Hyve (or in the hardware it drives) can cause.
using System;

namespace Hyve.Vmm;

/// <summary>
/// A vmm invariant broke: an exit encoding the SDM does not allow, a VMCS operation that cannot
/// fail unless Hyve is wrong. Never caught to carry on; the VM stops with the message.
/// </summary>
public sealed class VmmPanicException(string message) : Exception(message);
