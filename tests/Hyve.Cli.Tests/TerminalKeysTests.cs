// The terminal's escape keys, key by key: Ctrl-A x quits, Ctrl-A h lists the keys, Ctrl-A
// Ctrl-A sends one Ctrl-A, Ctrl-C and everything else go to the guest as typed.
using System.Collections.Generic;
using Xunit;

namespace Hyve.Cli.Tests;

public sealed class TerminalKeysTests
{
    // What each key of input does, in order.
    private static List<Terminal.KeyAction> Actions(params byte[] keys)
    {
        var actions = new List<Terminal.KeyAction>();
        bool escape = false;
        foreach (byte k in keys)
            actions.Add(Terminal.Key(k, ref escape));
        return actions;
    }

    [Fact]
    public void EscapeKeysAreCommandsAndTheRestGoesToTheGuest()
    {
        const byte CtrlA = 0x01, CtrlC = 0x03;
        Assert.Equal([Terminal.KeyAction.Send, Terminal.KeyAction.Send, Terminal.KeyAction.Send], Actions((byte)'l', CtrlC, (byte)'x'));
        Assert.Equal([Terminal.KeyAction.None, Terminal.KeyAction.Quit], Actions(CtrlA, (byte)'x'));
        Assert.Equal([Terminal.KeyAction.None, Terminal.KeyAction.Help, Terminal.KeyAction.Send], Actions(CtrlA, (byte)'h', (byte)'h'));
        // Ctrl-A Ctrl-A sends one Ctrl-A, and the next key is an ordinary one again.
        Assert.Equal([Terminal.KeyAction.None, Terminal.KeyAction.Send, Terminal.KeyAction.Send], Actions(CtrlA, CtrlA, (byte)'x'));
        // An unknown key after Ctrl-A is dropped.
        Assert.Equal([Terminal.KeyAction.None, Terminal.KeyAction.None, Terminal.KeyAction.Send], Actions(CtrlA, (byte)'q', (byte)'q'));
    }
}
