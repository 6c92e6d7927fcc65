// The VM's APIC bus: interrupt messages from ICR writes (and, later, the I/O APIC and MSIs) to
// the local APICs they name. INIT and SIPI are only recorded for the target's run loop.
using System;

namespace Hyve.Vmm.Devices;

/// <summary>Delivers interrupt messages to a VM's local APICs.</summary>
public sealed class ApicBus : IApicBus
{
    private readonly Vm _vm;

    /// <summary>The bus of <paramref name="vm"/>.</summary>
    public ApicBus(Vm vm) => _vm = vm;

    /// <summary>Called with the vector of an EOI for a level-triggered interrupt (the I/O APIC's hook).</summary>
    public Action<int>? LevelEoi { get; set; }

    /// <summary>Messages that named no APIC.</summary>
    public long Undelivered { get; private set; }

    /// <inheritdoc/>
    public void EndOfInterrupt(int vector) => LevelEoi?.Invoke(vector);

    /// <inheritdoc/>
    public void Deliver(LocalApic? source, in ApicMessage m)
    {
        bool any = false;
        foreach (Vcpu v in _vm.Vcpus)
        {
            LocalApic target = v.Apic;
            bool named = m.Shorthand switch
            {
                1 => target == source,
                2 => true,
                3 => target != source,
                _ => target.Matches(m.Logical, m.Destination),
            };
            if (!named)
                continue;
            any = true;
            switch (m.Mode)
            {
                case DeliveryMode.Fixed:
                    target.Accept(m.Vector, m.Level);
                    break;
                case DeliveryMode.LowestPriority:
                    // Arbitration picks one: the first named APIC stands in for the lowest priority.
                    target.Accept(m.Vector, m.Level);
                    return;
                case DeliveryMode.Nmi:
                    target.AcceptNmiMessage();
                    break;
                case DeliveryMode.Init:
                    _vm.SendInit(v.Id);
                    break;
                case DeliveryMode.Startup:
                    _vm.SendSipi(v.Id, m.Vector);
                    break;
            }
        }
        if (!any)
            Undelivered++;
    }
}
