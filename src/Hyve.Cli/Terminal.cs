// COM1's terminal for `hyve run`: on a terminal, raw input (every key goes to the guest as it
// is typed, Ctrl-C included) with the escape keys QEMU's users know (Ctrl-A x quits, Ctrl-A h
// lists the keys, Ctrl-A Ctrl-A sends a Ctrl-A), and the terminal's settings restored on every
// way out: the run's end, an error, SIGTERM, SIGHUP or SIGINT. From a pipe, the bytes go to the
// guest as they come. Either way the machine holds them until the guest listens (SerialInput).
using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;
using Hyve.Devices;

namespace Hyve.Cli;

/// <summary>Connects standard input to the machine's COM1.</summary>
internal sealed partial class Terminal : IDisposable
{
    /// <summary>The escape key: Ctrl-A.</summary>
    public const byte Escape = 0x01;

    /// <summary>What Ctrl-A h prints.</summary>
    public const string EscapeHelp =
        "\r\nC-a h    print this help\r\nC-a x    exit Hyve (the guest is stopped as by a power-off)\r\nC-a C-a  send C-a to the guest\r\n";

    private volatile Machine _machine;
    private volatile bool _ended;
    private readonly byte[]? _saved;
    private readonly PosixSignalRegistration[] _signals;
    private int _restored;

    /// <summary>The signal that ended the run, or 0.</summary>
    public int Signal { get; private set; }

    /// <summary>Whether Ctrl-A x ended the run.</summary>
    public bool Quit { get; private set; }

    /// <summary>Sends what is typed from now on to <paramref name="next"/>, the machine that
    /// replaced the one attached (after a reset through the firmware).</summary>
    public void Retarget(Machine next) => _machine = next;

    private Terminal(Machine machine, byte[]? saved)
    {
        _machine = machine;
        _saved = saved;
        _signals =
        [
            PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal),
            PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnSignal),
            PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal),
        ];
        var pump = new Thread(Pump) { IsBackground = true, Name = "console-input" };
        pump.Start();
    }

    /// <summary>Starts feeding standard input to <paramref name="machine"/>, in raw mode when it
    /// is a terminal.</summary>
    public static Terminal Attach(Machine machine)
    {
        byte[]? saved = null;
        if (OperatingSystem.IsLinux() && Termios.IsTerminal(0))
            saved = Termios.MakeRaw(0);
        return new Terminal(machine, saved);
    }

    private void OnSignal(PosixSignalContext context)
    {
        // Handled here: the run ends as a stop, the settings come back, and the status says why.
        context.Cancel = true;
        Signal = context.Signal switch
        {
            PosixSignal.SIGHUP => 1,
            PosixSignal.SIGINT => 2,
            _ => 15,
        };
        Restore();
        _machine.Stop(MachineStop.PowerOff);
    }

    private void Pump()
    {
        // File descriptor 0 itself: Console's standard-input stream reads a terminal a line at a
        // time through its own line editor, which is what raw mode is here to avoid.
        using var input = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(0, ownsHandle: false), FileAccess.Read, 0);
        var one = new byte[1];
        bool escape = false; // Ctrl-A was the last key
        while (!_ended)
        {
            int n;
            try
            {
                n = input.Read(one, 0, 1);
            }
            catch (IOException)
            {
                return;
            }
            if (n == 0)
                return; // end of input: the guest keeps running without it
            byte b = one[0];
            switch (_saved != null ? Key(b, ref escape) : KeyAction.Send)
            {
                case KeyAction.Quit:
                    Quit = true;
                    _machine.Stop(MachineStop.PowerOff);
                    return;
                case KeyAction.Help:
                    Console.Error.Write(EscapeHelp);
                    continue;
                case KeyAction.None:
                    continue;
            }
            // The guest has not taken what is waiting: nothing typed is lost, also across a reset
            // (a stopped machine is about to be replaced, or the run to end).
            while (!_ended && (_machine.Stopped != MachineStop.None || !_machine.Type(b)))
                Thread.Sleep(1);
        }
    }

    /// <summary>What a key typed on the terminal does.</summary>
    public enum KeyAction
    {
        /// <summary>The key goes to the guest.</summary>
        Send,
        /// <summary>Nothing (the escape key itself, or an unknown key after it).</summary>
        None,
        /// <summary>Ctrl-A x: the run ends.</summary>
        Quit,
        /// <summary>Ctrl-A h: the escape keys are listed.</summary>
        Help,
    }

    /// <summary>The escape keys as QEMU's users know them: <paramref name="key"/> after
    /// <paramref name="escape"/> (Ctrl-A was the key before, updated here) is a command; Ctrl-A
    /// twice sends one Ctrl-A; every other key goes to the guest as it is.</summary>
    public static KeyAction Key(byte key, ref bool escape)
    {
        if (!escape)
        {
            escape = key == Escape;
            return escape ? KeyAction.None : KeyAction.Send;
        }
        escape = false;
        return key switch
        {
            (byte)'x' or (byte)'X' => KeyAction.Quit,
            (byte)'h' or (byte)'H' or (byte)'?' => KeyAction.Help,
            Escape => KeyAction.Send, // a literal Ctrl-A
            _ => KeyAction.None,
        };
    }

    // Puts the terminal's settings back (once, from whichever way out comes first).
    private void Restore()
    {
        if (_saved != null && Interlocked.Exchange(ref _restored, 1) == 0)
            Termios.Set(0, _saved);
    }

    /// <summary>Restores the terminal and stops listening for signals.</summary>
    public void Dispose()
    {
        _ended = true;
        Restore();
        foreach (PosixSignalRegistration r in _signals)
            r.Dispose();
    }

    /// <summary>The terminal interface of the C library (termios), for raw mode.</summary>
    private static unsafe partial class Termios
    {
        // struct termios on x86-64 Linux is 60 bytes; a little more room costs nothing.
        private const int Size = 64;
        private const int OflagOffset = 4;
        private const int TcsaNow = 0;

        public static bool IsTerminal(int fd) => isatty(fd) == 1;

        // The current settings (to restore later); the terminal is then set raw for input (no
        // line editing, echo or signal keys) with output processing kept, as QEMU's stdio does.
        public static byte[]? MakeRaw(int fd)
        {
            var saved = new byte[Size];
            var raw = new byte[Size];
            // SAFETY: both arrays are pinned for the calls and larger than struct termios.
            fixed (byte* s = saved)
            fixed (byte* r = raw)
            {
                if (tcgetattr(fd, s) != 0 || tcgetattr(fd, r) != 0)
                    return null;
                cfmakeraw(r);
                *(uint*)(r + OflagOffset) = *(uint*)(s + OflagOffset);
                if (tcsetattr(fd, TcsaNow, r) != 0)
                    return null;
            }
            return saved;
        }

        public static void Set(int fd, byte[] settings)
        {
            // SAFETY: settings came from MakeRaw: a pinned array larger than struct termios.
            fixed (byte* s = settings)
                _ = tcsetattr(fd, TcsaNow, s);
        }

        [LibraryImport("libc")]
        private static partial int isatty(int fd);

        [LibraryImport("libc")]
        private static partial int tcgetattr(int fd, byte* termios);

        [LibraryImport("libc")]
        private static partial int tcsetattr(int fd, int when, byte* termios);

        [LibraryImport("libc")]
        private static partial void cfmakeraw(byte* termios);
    }
}
