"""What a correct answer to each topic must contain (phrases from the article), shared by the unit
and end-to-end tests. Matching is case-insensitive."""

PHONE = "(310) 828-7757"

TOPIC_PHRASES = {
    "what_is_fibromyalgia": ["pain, fatigue", "hypersensitivity to touch"],
    "symptoms": ["pain, fatigue", "hypersensitivity to touch"],
    "causes": ["shrouded in mystery", "low level of serotonin"],
    "who_gets_it": ["predominately women"],
    "related_conditions": ["depression, insomnia and stress", "unclear"],
    "back_pain": ["common problem", "managed by trying different treatments"],
    "treatments": ["physical therapy", "gentle exercise", "biofeedback", "decompression spine surgery"],
    "combined_approach": ["combined approach", "trial basis", "may take time", "individualized"],
    "surgery": ["decompression spine surgery", "have failed"],
    "surgery_candidate": ["candidate for spine surgery", "Dr. Hyun Bae"],
    "clinic": ["The Spine Institute Center for Spinal Restoration", "Santa Monica", "Dr. Hyun Bae"],
    "doctor": ["Dr. Hyun Bae", "conservative orthopedic surgeon"],
    "contact": [PHONE, "in-person consultation"],
}

THERAPY_PHRASES = {
    "physical_therapy": ["physical therapy", "stretching", "lumbar region"],
    "gentle_exercise": ["gentle exercises", "swimming and walking"],
    "medication": ["regimen of serotonin", "pain medications"],
    "antidepressants": ["anti-depressant medications", "combined approach"],
    "sleep_aids": ["sleep aids", "combined approach"],
    "dietary_changes": ["dietary changes", "combined approach"],
    "water_therapy": ["water therapy", "combined approach"],
    "biofeedback": ["biofeedback", "combined approach"],
}


def contains_all(text: str, phrases) -> bool:
    lowered = text.lower()
    return all(phrase.lower() in lowered for phrase in phrases)
