"""Reading InterSystems IRIS material: productions, routing rules and DTL transforms.

Each reader takes a class file (``.cls``) or a Studio / portal XML export and gives HIE's own
objects, naming the file and line of every problem:

- ``production``: ``Ens.Production`` -> ``Production``, with a migration report;
- ``mapping``: what each IRIS class and setting becomes in HIE (extendable by a mapping file);
- ``rules``: ``Ens.Rule.Definition`` -> ``hie.rules.model.RuleDefinition``;
- ``dtl``: ``Ens.DataTransformDTL`` -> ``hie.rules.transform.Transform``;
- ``lookup``: lookup-table exports -> the tables of ``hie.rules.loader.LookupTables``;
- ``objectscript_code``: the ObjectScript of a DTL's ``<code>`` blocks -> DTL actions (a subset);
- ``message_classes``: ``Property`` definitions of message classes -> pydantic models;
- ``helper_classes``: helper-class calls -> Python functions (``hie-mapping.yaml``), and stubs;
- ``classfile``: the one reader of class files and exports that the readers above share;
- ``safe_xml``: the parser every one of them uses (no DTDs, no entities, no network).
"""

from __future__ import annotations

from hie.iris.dtl import load_dtl, parse_dtl
from hie.iris.mapping import Mapping, load_mapping
from hie.iris.production import (
    IrisProduction,
    load_iris_production,
    migration_report,
    read_iris_production,
)
from hie.iris.rules import load_iris_rules, parse_iris_rules

__all__ = [
    "IrisProduction",
    "Mapping",
    "load_dtl",
    "load_iris_production",
    "load_iris_rules",
    "load_mapping",
    "migration_report",
    "parse_dtl",
    "parse_iris_rules",
    "read_iris_production",
]
