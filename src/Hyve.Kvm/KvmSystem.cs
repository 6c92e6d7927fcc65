// /dev/kvm itself: whether this host can run the KVM backend (and why not), and the system
// ioctls a VM needs before it exists.
using System.IO;

namespace Hyve.Kvm;

/// <summary>An open /dev/kvm whose API version and capabilities suit the backend.</summary>
public sealed class KvmSystem : System.IDisposable
{
    /// <summary>The device.</summary>
    public const string DevicePath = "/dev/kvm";

    private static string? s_unusable;
    private static bool s_probed;
    private static readonly System.Threading.Lock s_lock = new();

    private KvmSystem(int fd) => Fd = fd;

    /// <summary>The /dev/kvm descriptor.</summary>
    public int Fd { get; private set; }

    /// <summary>Opens /dev/kvm and checks what the backend relies on; throws
    /// <see cref="KvmException"/> with a one-line reason when this host cannot run it.</summary>
    public static KvmSystem Open()
    {
        if (!File.Exists(DevicePath))
            throw new KvmException($"{DevicePath} does not exist: this host has no KVM (use --backend soft)");
        int fd = KvmApi.Open(DevicePath);
        var sys = new KvmSystem(fd);
        try
        {
            int version = KvmApi.TryIoctl(fd, KvmApi.GetApiVersion, 0);
            if (version != KvmApi.ApiVersion)
                throw new KvmException($"{DevicePath} reports API version {version}, not {KvmApi.ApiVersion}");
            Require(fd, KvmApi.CapImmediateExit, "KVM_CAP_IMMEDIATE_EXIT");
            Require(fd, KvmApi.CapX86UserSpaceMsr, "KVM_CAP_X86_USER_SPACE_MSR");
            Require(fd, KvmApi.CapX86MsrFilter, "KVM_CAP_X86_MSR_FILTER");
            Require(fd, KvmApi.CapVcpuEvents, "KVM_CAP_VCPU_EVENTS");
            return sys;
        }
        catch
        {
            sys.Dispose();
            throw;
        }
    }

    private static void Require(int fd, int cap, string name)
    {
        if (KvmApi.TryIoctl(fd, KvmApi.CheckExtension, cap) <= 0)
            throw new KvmException($"{DevicePath} lacks {name}, which the KVM backend needs");
    }

    /// <summary>Null when a VM with a vCPU can be made on this host; otherwise why not (one line).
    /// Probed once per process.</summary>
    public static string? Unusable
    {
        get
        {
            lock (s_lock)
            {
                if (!s_probed)
                {
                    s_probed = true;
                    s_unusable = Probe();
                }
                return s_unusable;
            }
        }
    }

    private static string? Probe()
    {
        try
        {
            using KvmSystem sys = Open();
            int vm = KvmApi.Ioctl(sys.Fd, KvmApi.CreateVm, 0, "KVM_CREATE_VM");
            try
            {
                int vcpu = KvmApi.Ioctl(vm, KvmApi.CreateVcpu, 0, "KVM_CREATE_VCPU");
                KvmApi.Close(vcpu);
            }
            finally
            {
                KvmApi.Close(vm);
            }
            return null;
        }
        catch (KvmException e)
        {
            return e.Message;
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (Fd >= 0)
            KvmApi.Close(Fd);
        Fd = -1;
    }
}
