// Tests that need a working /dev/kvm: on a host without one they are reported as skipped, with the
// reason the KVM backend gives (missing device, no permission, a capability it lacks).
using Hyve.Kvm;
using Xunit;

namespace Hyve.TestSupport;

/// <summary>A fact that runs only where the KVM backend can run.</summary>
public sealed class KvmFactAttribute : FactAttribute
{
    /// <summary>Skips with the reason when KVM is not usable here.</summary>
    public KvmFactAttribute()
    {
        if (KvmSystem.Unusable is { } why)
            Skip = $"KVM is not usable on this host: {why}";
    }
}

/// <summary>A theory that runs only where the KVM backend can run.</summary>
public sealed class KvmTheoryAttribute : TheoryAttribute
{
    /// <summary>Skips with the reason when KVM is not usable here.</summary>
    public KvmTheoryAttribute()
    {
        if (KvmSystem.Unusable is { } why)
            Skip = $"KVM is not usable on this host: {why}";
    }
}
