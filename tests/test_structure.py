"""The project's modules form layers: no import cycles (imports deferred into functions included), and no module
uses another's private names (`_name`), so that each module's public functions are all another needs."""

import ast
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
PACKAGES = ("tokens", "dashboard", "localsite")


def project_modules():
    found = {}
    for package in PACKAGES:
        for path in (BASE / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(BASE).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path, modules):
    """{project module imported} and {local name: project module} for every import in the file, at any depth."""
    imported, aliases = set(), {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    imported.add(alias.name)
                    if alias.asname:
                        aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in modules:  # from tokens import reading
                    imported.add(full)
                    aliases[alias.asname or alias.name] = full
                elif node.module in modules:
                    imported.add(node.module)
    return imported, aliases


def private_uses(path, modules):
    """`from x import _y` and `x._y` where x is a project module: another module's private names."""
    _imported, aliases = imports_of(path, modules)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module in modules:
            found += [f"{node.module}.{a.name}" for a in node.names if is_private(a.name)]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            if is_private(node.attr):
                found.append(f"{aliases[node.value.id]}.{node.attr}")
    return found


def is_private(name):
    return name.startswith("_") and not name.startswith("__")


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_project_module_imports_another_that_imports_it_back_even_inside_a_function():
    modules = project_modules()
    graph = {name: imports_of(path, modules)[0] - {name} for name, path in modules.items()}
    assert cycles(graph) == []


def test_the_checks_see_a_cycle_and_a_private_name_when_there_is_one(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    source = tmp_path / "m.py"
    source.write_text("from tokens import engine\nfrom tokens.engine import _write\n\ndef f():\n    engine._write()\n")
    assert private_uses(source, {"tokens", "tokens.engine"}) == ["tokens.engine._write", "tokens.engine._write"]


def test_no_module_uses_another_modules_private_names():
    modules = project_modules()
    paths = [*modules.values(), *(BASE / "tests").glob("*.py"), *(BASE / "bench").glob("*.py")]
    uses = {str(p.relative_to(BASE)): private_uses(p, modules) for p in paths}
    assert {path: names for path, names in uses.items() if names} == {}


def is_view_module(name):
    return name == "dashboard.views" or name.startswith("dashboard.") and name.endswith("_views")


def layering_breaches(graph):
    """Imports that cross the layers: a view module importing another view module, the API importing a view module,
    the domain (tokens) importing the web side (dashboard). urls.py is where views are put together."""
    found = []
    for module, imported in graph.items():
        for other in imported:
            if is_view_module(module) and is_view_module(other):
                found.append(f"{module} -> {other} (a view module imports another)")
            elif module.startswith("dashboard.api") and is_view_module(other):
                found.append(f"{module} -> {other} (the API imports a view module)")
            elif module.startswith("tokens") and other.split(".")[0] in ("dashboard", "localsite"):
                found.append(f"{module} -> {other} (the domain imports the web side or the local site)")
    return sorted(found)


def test_views_import_no_view_the_api_imports_no_view_and_the_domain_imports_no_web_module():
    modules = project_modules()
    graph = {name: imports_of(path, modules)[0] - {name} for name, path in modules.items()}
    assert layering_breaches(graph) == []


def test_the_layering_check_sees_each_kind_of_breach():
    graph = {"dashboard.views": {"dashboard.job_views", "dashboard.payloads"},
             "dashboard.api.pools": {"dashboard.views"}, "tokens.alerts": {"dashboard.roles"},
             "dashboard.urls": {"dashboard.views"}}
    assert [b.split(" (")[0] for b in layering_breaches(graph)] == [
        "dashboard.api.pools -> dashboard.views", "dashboard.views -> dashboard.job_views",
        "tokens.alerts -> dashboard.roles"]
