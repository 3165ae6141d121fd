"""An A2A client as off the shelf as it gets: the official Python SDK
(`a2a-sdk`) over the HTTP+JSON binding, against one agent of a node.

Usage: a2a_client.py BASE AGENT TOKEN_FILE WRONG_TOKEN

It fetches the agent's card, sends a message and streams its task to the
end, reads the task back, cancels a second task, and checks that a wrong
token is refused. Each
event is printed as a JSON line; the last line is `ok` when all held.
"""

import asyncio
import json
import sys
import uuid

import httpx
from google.protobuf.json_format import MessageToDict

from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    TaskState,
)
from a2a.utils.constants import TransportProtocol


def fail(why):
    print(f"FAIL: {why}", flush=True)
    sys.exit(1)


async def main(base, agent, token_file, wrong):
    with open(token_file) as f:
        token = f.read().strip()
    root = f"{base}/a2a/agents/{agent}"
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=auth, timeout=120) as http:
        card = await A2ACardResolver(http, root).get_agent_card()
        if card.name != agent or not card.capabilities.streaming:
            fail(f"unexpected card: {MessageToDict(card)}")
        print(json.dumps({"card": MessageToDict(card)}), flush=True)

        config = ClientConfig(
            streaming=True,
            httpx_client=http,
            supported_protocol_bindings=[TransportProtocol.HTTP_JSON],
        )
        client = ClientFactory(config).create(card)
        message = Message(
            role=Role.ROLE_USER,
            message_id=str(uuid.uuid4()),
            parts=[Part(text="summarise: the quick brown fox")],
        )
        task_id, states, artifacts = None, [], []
        async for event in client.send_message(SendMessageRequest(message=message)):
            print(json.dumps(MessageToDict(event)), flush=True)
            if event.HasField("task"):
                task_id = event.task.id
                states.append(event.task.status.state)
            elif event.HasField("status_update"):
                states.append(event.status_update.status.state)
            elif event.HasField("artifact_update"):
                artifacts.append(event.artifact_update.artifact.parts[0].text)
        if task_id is None:
            fail("the stream did not start with the task")
        if states[0] != TaskState.TASK_STATE_SUBMITTED:
            fail(f"first state {TaskState.Name(states[0])}")
        # Changes close together may arrive as one: `working` need not show.
        if states[-1] != TaskState.TASK_STATE_COMPLETED:
            fail(f"ended {TaskState.Name(states[-1])}")
        if artifacts != ["a fox"]:
            fail(f"artifacts streamed: {artifacts}")

        task = await client.get_task(GetTaskRequest(id=task_id))
        if task.status.state != TaskState.TASK_STATE_COMPLETED:
            fail(f"task read back {TaskState.Name(task.status.state)}")
        if [a.parts[0].text for a in task.artifacts] != ["a fox"]:
            fail(f"task read back: {MessageToDict(task)}")
        print(json.dumps({"task": MessageToDict(task)}), flush=True)

        # Polling: the answer comes at once, with the task just submitted.
        polling = ClientFactory(
            ClientConfig(
                streaming=False,
                polling=True,
                httpx_client=http,
                supported_protocol_bindings=[TransportProtocol.HTTP_JSON],
            )
        ).create(card)
        second = Message(
            role=Role.ROLE_USER,
            message_id=str(uuid.uuid4()),
            parts=[Part(text="count to a million")],
        )
        events = [e async for e in polling.send_message(SendMessageRequest(message=second))]
        pending = events[0].task
        if pending.status.state != TaskState.TASK_STATE_SUBMITTED:
            fail(f"a polled task is {TaskState.Name(pending.status.state)}")
        canceled = await polling.cancel_task(CancelTaskRequest(id=pending.id))
        if canceled.status.state != TaskState.TASK_STATE_CANCELED:
            fail(f"a canceled task is {TaskState.Name(canceled.status.state)}")
        print(json.dumps({"canceled": MessageToDict(canceled)}), flush=True)

    refused = {"Authorization": f"Bearer {wrong}"}
    async with httpx.AsyncClient(headers=refused, timeout=30) as http:
        answer = await http.get(f"{root}/.well-known/agent-card.json")
        if answer.status_code != 401:
            fail(f"a wrong token got {answer.status_code}")
        client = ClientFactory(
            ClientConfig(
                streaming=True,
                httpx_client=http,
                supported_protocol_bindings=[TransportProtocol.HTTP_JSON],
            )
        ).create(card)
        try:
            async for _ in client.send_message(SendMessageRequest(message=message)):
                fail("a wrong token sent a message")
        except Exception as e:  # the SDK's error for a 401
            print(json.dumps({"refused": str(e)}), flush=True)
        else:
            fail("a wrong token sent a message")
    print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
