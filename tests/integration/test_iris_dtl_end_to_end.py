"""An IRIS production with a DTL as IRIS users write them, loaded directly and run for real.

The production (a ``.cls`` written here) has an HL7 TCP service, an HL7 routing engine whose
rule sends through ``Demo.DTL.LabOut``, and an HL7 TCP operation to a loopback MLLP peer.
The DTL uses ``$PIECE``, ``$ZCONVERT``, ``$ZDATEH`` / ``$ZDATE``, ``..Lookup`` on an exported
lookup table, a ``<foreach>`` over OBX, a ``<code>`` block and a helper class method,
``##class(Demo.Util.Helper).Units(x)``, which ``hie-mapping.yaml`` beside the production maps
to a Python function in ``lab_helpers.py``. Everything runs in real processes: the gateway,
a worker per item, Redis.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hie.adapters.mllp import BlockingMLLPClient
from hie.config.loader import load_production
from hie.hl7 import ack_code
from tests.integration.harness import Harness, free_port, wait_for
from tests.peers import MLLPPeer

pytestmark = pytest.mark.integration

PRODUCTION = """Class Demo.Lab.Production Extends Ens.Production
{{
XData ProductionDefinition
{{
<Production Name="{name}" LogGeneralTraceEvents="false">
  <Item Name="Lab.In" ClassName="EnsLib.HL7.Service.TCPService" PoolSize="1" Enabled="true">
    <Setting Target="Adapter" Name="Port">{port}</Setting>
    <Setting Target="Host" Name="TargetConfigNames">Lab.Router</Setting>
  </Item>
  <Item Name="Lab.Router" ClassName="EnsLib.HL7.MsgRouter.RoutingEngine" PoolSize="1"
   Enabled="true">
    <Setting Target="Host" Name="BusinessRuleName">Demo.Lab.Rule</Setting>
    <Setting Target="Host" Name="LookupTables">lookup/SexCodes.xml</Setting>
  </Item>
  <Item Name="EMR.Out" ClassName="EnsLib.HL7.Operation.TCPOperation" PoolSize="1"
   Enabled="true">
    <Setting Target="Adapter" Name="IPAddress">127.0.0.1</Setting>
    <Setting Target="Adapter" Name="Port">{peer}</Setting>
    <Setting Target="Host" Name="RetryInterval">1</Setting>
  </Item>
</Production>
}}
}}
"""
RULE = """Class Demo.Lab.Rule Extends Ens.Rule.Definition
{
XData RuleDefinition [ XMLNamespace = "http://www.intersystems.com/rule" ]
{
<ruleDefinition alias="" context="EnsLib.HL7.MsgRouter.RoutingEngine" production="">
<ruleSet name="" effectiveBegin="" effectiveEnd="">
<rule name="results">
<constraint name="docName" value="ORU_R01"></constraint>
<when condition="1"><send transform="Demo.DTL.LabOut" target="EMR.Out"></send></when>
</rule>
</ruleSet>
</ruleDefinition>
}
}
"""
DTL = """Class Demo.DTL.LabOut Extends Ens.DataTransformDTL [ DependsOn = EnsLib.HL7.Message ]
{
Parameter IGNOREMISSINGSOURCE = 1;

XData DTL [ XMLNamespace = "http://www.intersystems.com/dtl" ]
{
<transform sourceClass='EnsLib.HL7.Message' targetClass='EnsLib.HL7.Message'
 sourceDocType='2.5:ORU_R01' targetDocType='2.5:ORU_R01' create='new' language='objectscript'>
<annotation>Lab results for the EMR: given names upper case, sex spelled out.</annotation>
<assign value='source.{MSH}' property='target.{MSH}' action='set'/>
<assign value='"HIE"' property='target.{MSH:SendingApplication}' action='set'/>
<assign value='source.{PID}' property='target.{PID}' action='set'/>
<assign value='$PIECE(source.{PID:PatientName},"^",1)' property='tFamily' action='set'/>
<code><![CDATA[
 // The EMR wants the given name in capitals, the family name as sent.
 Set tGiven = $ZCONVERT($PIECE(source.{PID:PatientName},"^",2),"U")
 If tGiven '= "" { Set target.{PID:PatientName} = tFamily_"^"_tGiven } Else { Quit }
]]></code>
<assign value='..Lookup("SexCodes",source.{PID:AdministrativeSex},"UNKNOWN")'
 property='target.{PID:AdministrativeSex}' action='set'/>
<foreach property='source.{OBX()}' key='k1'>
<comment><annotation>Every result, with units the EMR knows.</annotation></comment>
<assign value='source.{OBX(k1)}' property='target.{OBX(k1)}' action='set'/>
<assign value='##class(Demo.Util.Helper).Units(source.{OBX(k1):Units})'
 property='target.{OBX(k1):Units}' action='set'/>
</foreach>
<assign value='"Born "_$ZDATE($ZDATEH(source.{PID:DateTimeofBirth},8),3)'
 property='target.{NTE(1):Comment}' action='set'/>
</transform>
}
}
"""
SEX_CODES = """<?xml version="1.0" encoding="UTF-8"?>
<lookupTable>
<entry table="SexCodes" key="F">FEMALE</entry>
<entry table="SexCodes" key="M">MALE</entry>
</lookupTable>
"""
HELPERS = '''"""Demo.Util.Helper, in Python."""


def units(code: str) -> str:
    """Demo.Util.Helper.Units: UCUM codes the EMR knows."""
    return {"10*9/L": "GIGA/L"}.get(code, code.upper())
'''
MAPPING = "functions:\n  Demo.Util.Helper.Units: lab_helpers:units\n"

SENT = (
    "MSH|^~\\&|LAB|HOSP|EMR|HOSP|20240101120000||ORU^R01^ORU_R01|LAB0001|P|2.5\r"
    "PID|1||4711^^^HOSP^MR||DOE^Jane||19800101|F\r"
    "OBR|1||A1|CBC^Blood count\r"
    "OBX|1|NM|WBC^Leukocytes||5.2|10*9/L|4.0-10.0|N|||F\r"
    "OBX|2|NM|HGB^Haemoglobin||13.1|g/dL|12.0-16.0|N|||F\r"
)
#: What the EMR must receive, byte for byte: MSH-3 HIE, the given name in capitals, PID-8
#: from the lookup table, OBR left out (create='new'), OBX-6 through the helper, and a NTE
#: with the birth date as $ZDATE(...,3) writes it.
EXPECTED = (
    b"MSH|^~\\&|HIE|HOSP|EMR|HOSP|20240101120000||ORU^R01^ORU_R01|LAB0001|P|2.5\r"
    b"PID|1||4711^^^HOSP^MR||DOE^JANE||19800101|FEMALE\r"
    b"OBX|1|NM|WBC^Leukocytes||5.2|GIGA/L|4.0-10.0|N|||F\r"
    b"OBX|2|NM|HGB^Haemoglobin||13.1|G/DL|12.0-16.0|N|||F\r"
    b"NTE|||Born 1980-01-01\r"
)


def write_export(folder: Path, name: str, port: int, peer: int) -> Path:
    """The production and what it uses, laid out as an IRIS export beside it."""
    production = folder / "Demo.Lab.Production.cls"
    production.write_text(PRODUCTION.format(name=name, port=port, peer=peer))
    (folder / "Demo.Lab.Rule.cls").write_text(RULE)
    (folder / "Demo.DTL.LabOut.cls").write_text(DTL)
    (folder / "lookup").mkdir()
    (folder / "lookup" / "SexCodes.xml").write_text(SEX_CODES)
    (folder / "lab_helpers.py").write_text(HELPERS)
    (folder / "hie-mapping.yaml").write_text(MAPPING)
    return production


def test_iris_dtl_with_functions_lookup_code_and_a_helper_class_delivers_the_expected_bytes(
    harness: Harness,
) -> None:
    with MLLPPeer("AA") as peer:
        # Given the IRIS production, its rule, DTL, lookup table and helper mapping in one
        # folder, loaded directly (no import step) with a worker per item and the gateway
        port = free_port()
        harness.path = write_export(harness.tmp, harness.name, port, peer.port)
        harness.production = load_production(harness.path)
        for item in ("Lab.Router", "EMR.Out"):
            harness.start_worker(item)
        harness.start_gateway(port)

        # When the lab sends a result over MLLP
        with BlockingMLLPClient("127.0.0.1", port, response_timeout=30) as client:
            assert ack_code(client.send(SENT.encode())) == "AA"

        # Then the EMR receives the transformed message, exactly
        received = wait_for(lambda: list(peer.received), 60, "the EMR to receive the result")
        assert received == [EXPECTED], harness.log("Lab.Router")
