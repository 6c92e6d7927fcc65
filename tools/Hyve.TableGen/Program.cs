// Entry point: regenerates the decoder tables in place, or with --check reports whether they are stale.
using System;
using System.IO;
using Hyve.TableGen;

string root = FindRoot(AppContext.BaseDirectory) ?? FindRoot(Directory.GetCurrentDirectory())
    ?? throw new InvalidOperationException("cannot find the repository root (global.json)");
bool check = args.Length > 0 && args[0] == "--check";
var files = TableGenerator.Generate(TableGenerator.DefaultDataDir(root));
int stale = 0;
foreach (var (name, text) in files)
{
    string path = Path.Combine(TableGenerator.DefaultOutputDir(root), name);
    bool same = File.Exists(path) && File.ReadAllText(path) == text;
    if (same)
        continue;
    stale++;
    if (check)
        Console.Error.WriteLine($"stale: {path}");
    else
        File.WriteAllText(path, text);
}
Console.WriteLine(check ? $"{stale} stale file(s)" : $"{stale} file(s) written");
return check && stale > 0 ? 1 : 0;

static string? FindRoot(string start)
{
    for (var d = new DirectoryInfo(start); d != null; d = d.Parent)
    {
        if (File.Exists(Path.Combine(d.FullName, "global.json")) && Directory.Exists(Path.Combine(d.FullName, "src")))
            return d.FullName;
    }
    return null;
}
