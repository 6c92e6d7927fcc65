// The i8042 keyboard controller, as much as an operating system needs without a keyboard:
// status and data ports, the command byte, self-test (0xAA answers 0x55), interface tests,
// output-port reads and writes, and the pulse-reset command 0xFE that restarts the machine.
using System;
using Hyve.Vmm;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices;

/// <summary>The i8042 controller at ports 0x60 and 0x64 (no keyboard or mouse attached).</summary>
public sealed class I8042(Action<SuspendReason> stop) : IPortHandler
{
    /// <summary>The data port; the status and command port is at +4.</summary>
    public const ushort DataPort = 0x60;

    // Bit 4 reads 1: the keyboard is not inhibited by a keylock (a kernel warns otherwise).
    private const byte StatusOutputFull = 0x01, StatusSystem = 0x04, StatusCommand = 0x08, StatusUnlocked = 0x10;

    private byte _commandByte = 0x30; // both ports' clocks disabled, no interrupts
    private byte _output, _status = StatusSystem | StatusUnlocked;
    private byte _pending; // a command waiting for its data byte
    private byte _outputPort = 0x03; // A20 on, reset line high

    /// <summary>Registers ports 0x60 and 0x64.</summary>
    public void Register(PortBus ports)
    {
        ports.Register(DataPort, 1, this);
        ports.Register(DataPort + 4, 1, new CommandPort(this));
    }

    /// <inheritdoc/>
    public uint Read(ushort offset, int bytes)
    {
        _status &= unchecked((byte)~StatusOutputFull);
        return _output;
    }

    /// <inheritdoc/>
    public void Write(ushort offset, int bytes, uint value)
    {
        _status &= unchecked((byte)~StatusCommand);
        byte b = (byte)value;
        switch (_pending)
        {
            case 0x60:
                _commandByte = b;
                break;
            case 0xD1:
                _outputPort = b;
                if ((b & 1) == 0)
                    stop(SuspendReason.Reset);
                break;
            case 0:
                // A byte for the keyboard: nothing is attached, so it answers with a timeout
                // (0xFE, resend) as a controller with an empty port does.
                Answer(0xFE);
                break;
        }
        _pending = 0;
    }

    private void Answer(byte value)
    {
        _output = value;
        _status |= StatusOutputFull;
    }

    private void Command(byte cmd)
    {
        _status |= StatusCommand;
        switch (cmd)
        {
            case 0x20: Answer(_commandByte); break;
            case 0x60: case 0xD1: _pending = cmd; break;
            case 0xAA: Answer(0x55); break;          // controller self-test passed
            case 0xAB: case 0xA9: Answer(0x00); break; // interface tests passed
            case 0xD0: Answer(_outputPort); break;
            case 0xAD: _commandByte |= 0x10; break;  // disable the keyboard clock
            case 0xAE: _commandByte &= 0xEF; break;
            case 0xA7: _commandByte |= 0x20; break;
            case 0xA8: _commandByte &= 0xDF; break;
            default:
                if ((cmd & 0xF0) == 0xF0 && (cmd & 1) == 0)
                    stop(SuspendReason.Reset); // pulse output line 0: the CPU's reset
                break;
        }
    }

    private sealed class CommandPort(I8042 owner) : IPortHandler
    {
        public uint Read(ushort offset, int bytes) => owner._status;

        public void Write(ushort offset, int bytes, uint value) => owner.Command((byte)value);
    }
}
