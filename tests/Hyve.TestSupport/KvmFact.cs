// Tests that need a working /dev/kvm: on a host without one they are reported as skipped, with the
// reason the KVM backend gives (missing device, no permission, a capability it lacks). They can
// also skip themselves (Skip.If) when the host's KVM gives them no reference to compare with.
using Hyve.Kvm;
using Xunit;

namespace Hyve.TestSupport;

/// <summary>A fact that runs only where the KVM backend can run.</summary>
public sealed class KvmFactAttribute : SkippableFactAttribute
{
    /// <summary>Skips with the reason when KVM is not usable here.</summary>
    public KvmFactAttribute()
    {
        if (KvmSystem.Unusable is { } why)
            Skip = $"KVM is not usable on this host: {why}";
    }
}

/// <summary>A theory that runs only where the KVM backend can run.</summary>
public sealed class KvmTheoryAttribute : SkippableTheoryAttribute
{
    /// <summary>Skips with the reason when KVM is not usable here.</summary>
    public KvmTheoryAttribute()
    {
        if (KvmSystem.Unusable is { } why)
            Skip = $"KVM is not usable on this host: {why}";
    }
}
