// The I/O APIC: 24 pins, each with a redirection entry (vector, delivery mode, destination,
// polarity, trigger, mask); edge pins send a message per rising edge, level pins one per
// assertion until the EOI clears remote IRR, and again if the line is still asserted.

namespace Hyve.Vmm.Devices;

/// <summary>An 82093AA-style I/O APIC at <see cref="DefaultBase"/>.</summary>
public sealed class IoApic : IMmioHandler
{
    /// <summary>The usual base of the register window.</summary>
    public const ulong DefaultBase = 0xFEC0_0000;

    /// <summary>Number of pins.</summary>
    public const int Pins = 24;

    private const ulong Masked = 1UL << 16, RemoteIrr = 1UL << 14, LevelTrigger = 1UL << 15, ActiveLow = 1UL << 13;

    private readonly IApicBus _bus;
    private readonly ulong[] _redirection = new ulong[Pins];
    private uint _lines;
    private uint _select;
    private uint _id;

    /// <summary>An I/O APIC that sends its messages on <paramref name="bus"/>; every pin starts masked.</summary>
    public IoApic(IApicBus bus)
    {
        _bus = bus;
        for (int i = 0; i < Pins; i++)
            _redirection[i] = Masked;
    }

    /// <summary>The redirection entry of <paramref name="pin"/>.</summary>
    public ulong Entry(int pin) => _redirection[pin];

    /// <summary>Sets input <paramref name="pin"/> high or low (before polarity).</summary>
    public void SetPin(int pin, bool level)
    {
        if ((uint)pin >= Pins)
            return;
        uint bit = 1u << pin;
        bool was = (_lines & bit) != 0;
        _lines = level ? _lines | bit : _lines & ~bit;
        ulong e = _redirection[pin];
        bool active = level ^ ((e & ActiveLow) != 0);
        bool wasActive = was ^ ((e & ActiveLow) != 0);
        if ((e & LevelTrigger) != 0)
        {
            if (active)
                Service(pin);
        }
        else if (active && !wasActive)
        {
            Service(pin);
        }
    }

    // Sends pin's message if it is unmasked (and, for level pins, not already waiting for an EOI).
    private void Service(int pin)
    {
        ulong e = _redirection[pin];
        if ((e & Masked) != 0)
            return;
        bool level = (e & LevelTrigger) != 0;
        if (level)
        {
            if ((e & RemoteIrr) != 0)
                return;
            _redirection[pin] = e | RemoteIrr;
        }
        var mode = (DeliveryMode)((e >> 8) & 7);
        _bus.Deliver(null, new ApicMessage((byte)e, mode, (e & 0x800) != 0, (uint)(e >> 56), 0, level));
    }

    private bool Asserted(int pin) => (((_lines >> pin) & 1) != 0) ^ ((_redirection[pin] & ActiveLow) != 0);

    /// <summary>An EOI for <paramref name="vector"/> from a local APIC: level pins with that vector
    /// drop remote IRR, and one whose line is still asserted sends again.</summary>
    public void EndOfInterrupt(int vector)
    {
        for (int pin = 0; pin < Pins; pin++)
        {
            ulong e = _redirection[pin];
            if ((e & RemoteIrr) == 0 || (int)(e & 0xFF) != vector)
                continue;
            _redirection[pin] = e & ~RemoteIrr;
            if (Asserted(pin))
                Service(pin);
        }
    }

    /// <inheritdoc/>
    public ulong Read(ulong offset, int bytes)
    {
        if (offset == 0)
            return _select;
        if (offset != 0x10)
            return 0;
        return _select switch
        {
            0 => _id << 24,
            1 => 0x11 | ((Pins - 1) << 16),
            2 => _id << 24,
            >= 0x10 and < 0x10 + 2 * Pins => (_select & 1) == 0 ? (uint)_redirection[(_select - 0x10) >> 1] : (uint)(_redirection[(_select - 0x10) >> 1] >> 32),
            _ => 0,
        };
    }

    /// <inheritdoc/>
    public void Write(ulong offset, int bytes, ulong value)
    {
        if (offset == 0)
        {
            _select = (uint)value & 0xFF;
            return;
        }
        if (offset != 0x10)
            return;
        if (_select == 0)
        {
            _id = ((uint)value >> 24) & 0xF;
            return;
        }
        if (_select is < 0x10 or >= 0x10 + 2 * Pins)
            return;
        int pin = (int)((_select - 0x10) >> 1);
        ulong e = _redirection[pin];
        const ulong readOnly = RemoteIrr | (1UL << 12);
        if ((_select & 1) == 0)
            e = (e & ~0xFFFF_FFFFUL) | ((value & 0xFFFF_FFFF) & ~readOnly) | (e & readOnly);
        else
            e = (e & 0xFFFF_FFFF) | ((value & 0xFF00_0000) << 32);
        if ((e & LevelTrigger) == 0)
            e &= ~RemoteIrr;
        _redirection[pin] = e;
        if (Asserted(pin) && (e & LevelTrigger) != 0)
            Service(pin); // unmasking an asserted level pin delivers it
    }
}
